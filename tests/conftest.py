"""Shared pytest setup: make the repository's tutorial_lib importable even before `pip install -e`."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest
import torch

# Triton's interpreter runs the `triton` attention backend's kernels on a CPU. Triton reads this
# variable when a kernel is *defined*, i.e. when tutorial_lib.attention.triton_flash is imported, so
# it is set here, before any test imports it -- and only where no GPU can run the compiled kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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
