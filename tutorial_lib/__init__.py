"""tutorial_lib: the real implementations and the measuring kit behind the GPT-2 performance tutorial.

Importing this package loads nothing; import the pieces you use (``tutorial_lib.model``,
``tutorial_lib.measure.timing``, ``tutorial_lib.lessons.gqa`` ...). The core and the command line
need only torch, numpy, matplotlib, tiktoken and tqdm; ``tutorial_lib.widgets`` alone needs
ipywidgets. README.md has a map of the modules.
"""
__version__ = "0.2.0"
