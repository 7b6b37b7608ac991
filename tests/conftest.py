"""Unit tests draw off-screen and run on one torch thread, the course's setting
(course_lib.setup): tiny tensors run fastest there, floats are the notebooks' floats, and a
busy machine does not thrash."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
