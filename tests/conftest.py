"""Shared pytest setup: make the repository's tutorial_lib importable even before `pip install -e`."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
