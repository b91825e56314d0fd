"""tutorial_lib: the real implementations and the measuring kit behind the GPT-2 performance tutorial.

Importing this package is cheap and needs neither Jupyter nor ipywidgets; import submodules
(``tutorial_lib.model``, ``tutorial_lib.measure``, ...) for the pieces you use.
"""
__version__ = "0.1.0"

from tutorial_lib.config import GPTConfig, PRESETS, get_config  # noqa: E402,F401
