"""Run marimo's command line after importing the modules the app needs.

``marimo run`` executes each browser session's kernel in a thread of the server process, so
modules imported here before the server starts are already loaded when the first page opens.
Usage: ``python -m quantlens.app.serve run NOTEBOOK [marimo options] -- [notebook arguments]``.
"""

from __future__ import annotations

import runpy
import sys


def preload() -> None:
    """Import plotly, the app modules and the format readers (not PyTorch, which loads on demand)."""
    import plotly.graph_objects  # noqa: F401
    import plotly.io  # noqa: F401

    from quantlens.app import charts, choices, comparison, overview, session, views  # noqa: F401
    from quantlens.readers import readers

    readers()


if __name__ == "__main__":
    preload()
    sys.argv[0] = "marimo"
    runpy.run_module("marimo", run_name="__main__", alter_sys=True)
