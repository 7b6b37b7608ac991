"""Settings shared by the unit tests and the nbval kernels (which inherit this environment).

Progress bars are off (COURSE_PROGRESS=0) so nbval never compares a bar's text; the notebooks
were built with the same setting by tools/notebooks.py. Threads are fixed for identical floats.
"""

import os

os.environ["COURSE_PROGRESS"] = "0"
os.environ.setdefault("COURSE_THREADS", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
