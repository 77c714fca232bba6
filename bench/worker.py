"""Run one benchmark measurement in this fresh process: ``worker.py TASK OPTIONS_JSON``.

The last line printed is a JSON object with the task's numbers: seconds, bytes, and ``peak_rss``
(the process's maximum resident set size in bytes, see ``peak_rss``). Only the standard
library is imported at the top, so cold-start tasks pay only for what they import themselves.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

START = time.perf_counter()

# Both sides of every case run with the allocator setting quantlens chooses when it is imported
# before torch (see quantlens/__init__.py), so that no ratio compares two allocators.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def peak_rss() -> int:
    """Return this process's peak resident set size in bytes.

    Linux: ``VmHWM`` from /proc/self/status. ``getrusage``'s ru_maxrss would also count the
    parent's peak, because Linux carries it over fork and exec. Elsewhere: ru_maxrss (bytes on
    macOS, KiB on other systems).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def elapsed() -> float:
    return time.perf_counter() - START


def main() -> int:
    from quantlens_bench import tasks

    task, options = sys.argv[1], json.loads(sys.argv[2])
    try:
        handler = tasks.resolve(task)
    except KeyError as error:
        print(error.args[0], file=sys.stderr)
        return 2
    result = handler(**options)
    result["peak_rss"] = peak_rss()
    result["elapsed"] = elapsed()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
