"""Shared pytest setup: make the repository's tutorial_lib importable even before `pip install -e`."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops run faster on one intra-op thread than on two, and stay robust on a shared CPU.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the thread count is restored
    after the module, so timing tests elsewhere keep every thread.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
