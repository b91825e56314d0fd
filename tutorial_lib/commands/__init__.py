"""One module per command of ``python -m tutorial_lib`` (see cli.py)."""
