"""The lectures' experiments: task models, experiment metrics and loaders of shipped results.

A mechanism module (``course_lib.attention`` … ``course_lib.mamba``) holds what the lecture
derives; ``course_lib.experiments.<topic>`` holds what a notebook *does* with it (a task model,
the measurement of a claim, the loader of the checkpoint its training tool wrote). An
experiment of topic N imports mechanisms of topics <= N only.
"""
