"""tutorial_lib: the real implementations and the measuring kit behind the GPT-2 performance tutorial.

Importing this package loads nothing; import the pieces you use (``tutorial_lib.model``,
``tutorial_lib.measure.timing``, ``tutorial_lib.lessons.gqa`` ...). The core and the command line
need only torch, numpy, matplotlib, tiktoken and tqdm; ``tutorial_lib.widgets`` alone needs
ipywidgets. README.md has a map of the modules.

It does set up the CPU allocator, in two ways, unless you say otherwise (both measured, in fresh
processes, off against on: ``measure.allocator.huge_page_ab`` and the guide's ``own_paths`` section;
memory-heavy CPU steps spend much of their time in first-touch page faults):

- ``THP_MEM_ALLOC_ENABLE=1`` (unless already set) puts PyTorch's large CPU tensors on huge pages.
  PyTorch reads it at its first CPU allocation, so this happens before torch is imported here.
  ``THP_MEM_ALLOC_ENABLE=0`` before starting Python turns it off.
- ``cpu_memory.keep_freed_memory()`` tells glibc's malloc to keep freed memory in the process, so a
  step's large outputs reuse pages already mapped instead of faulting fresh ones in every step.
  ``TUTORIAL_KEEP_FREED_MEMORY=0`` (or your own glibc malloc settings, or ``LD_PRELOAD``: see
  ``cpu_memory.USER_MALLOC_ENV``) leaves it.
"""
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from tutorial_lib import cpu_memory  # noqa: E402,F401  (keeps freed CPU memory in the process on import)

__version__ = "0.2.0"
