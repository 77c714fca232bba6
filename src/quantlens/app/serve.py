"""Run marimo's command line after importing the modules the app needs and running it once.

``marimo run`` executes each browser session's kernel in a thread of the server process, so
modules imported here before the server starts are already loaded when the first page opens.
Running the notebook once as a script also builds what the first page would otherwise build
on its own: plotly's figure templates, marimo's markdown renderer and the default model, which
the app caches. Usage: ``python -m quantlens.app.serve run NOTEBOOK [marimo options] --
[notebook arguments]``.
"""

from __future__ import annotations

import importlib.util
import logging
import runpy
import sys
import time
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def preload() -> None:
    """Import plotly, anywidget (through histogram_widget), the app modules and the format readers (not PyTorch, which loads on demand)."""
    import plotly.graph_objects  # noqa: F401
    import plotly.io  # noqa: F401

    from quantlens.app import charts, choices, comparison, histogram_widget, overview, session, views  # noqa: F401
    from quantlens.readers import readers

    readers()


def warm_up(argv: Sequence[str]) -> None:
    """Run the notebook named in a ``marimo run`` command line once, with its notebook arguments.

    Failures are logged and ignored: the browser session runs the same cells and reports them.
    """
    arguments = list(argv[1:])
    split = arguments.index("--") if "--" in arguments else len(arguments)
    marimo_arguments, notebook_arguments = arguments[:split], arguments[split + 1 :]
    notebook = next((item for item in marimo_arguments if item.endswith(".py")), None)
    if notebook is None:
        return
    saved = sys.argv
    sys.argv = [notebook, *notebook_arguments]
    start = time.perf_counter()
    try:
        spec = importlib.util.spec_from_file_location("quantlens_app_warm_up", notebook)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.app.run()
    except Exception as error:  # a warm-up must never stop the server
        logger.debug("warm-up run of %s failed: %s", notebook, error)
    finally:
        sys.argv = saved
    logger.debug("warm-up run of %s took %.2f s", notebook, time.perf_counter() - start)


if __name__ == "__main__":
    preload()
    warm_up(sys.argv)
    sys.argv[0] = "marimo"
    runpy.run_module("marimo", run_name="__main__", alter_sys=True)
