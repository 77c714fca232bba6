"""The marimo app: ``notebook.py`` and the library code its cells call (which imports no marimo)."""
