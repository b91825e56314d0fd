"""tutorial_lib: the real implementations and the measuring kit behind the GPT-2 performance tutorial.

Importing this package loads nothing; import the pieces you use (``tutorial_lib.model``,
``tutorial_lib.measure.timing``, ``tutorial_lib.lessons.gqa`` ...). The core and the command line
need only torch, numpy, matplotlib, tiktoken and tqdm; ``tutorial_lib.widgets`` alone needs
ipywidgets. README.md has a map of the modules.

It does set one environment variable, unless you set it first: ``THP_MEM_ALLOC_ENABLE=1`` puts
PyTorch's large CPU tensors on huge pages. PyTorch reads it at its first CPU allocation, so this
happens before torch is imported here. Measured (``measure.allocator.huge_page_ab``, the guide's
``own_paths`` section): memory-heavy CPU steps spend much of their time in first-touch page faults,
and huge pages cut them. ``THP_MEM_ALLOC_ENABLE=0`` before starting Python turns it off.
"""
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.2.0"
