"""A helper process that draws a plan's Pareto PNG (``planner.plot.draw_pareto``).

``clustersim plan --out`` starts it before planning: it imports matplotlib (about a third of
the imports a plan needs) on a core the plan leaves idle while it is single-threaded (its own
imports, the profile, the ranking), then waits. ``draw(data, path)`` hands it the figure's
data (``planner.plot.pareto_data``: plain lists, sent as one JSON line) and returns at once;
``wait()`` returns when the PNG is on disk. The plan's process never imports matplotlib (about
35 MB less at its peak). If the helper cannot start or fails, ``wait`` says so (False) and the
caller draws in-process. Only the facade uses it (``clustersim.outputs.write_plan``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["PlotProcess"]

# the helper: matplotlib first, then one request (or none: stdin closed)
_CHILD = """
import json, sys
from planner.plot import _plt, draw_pareto
_plt()
line = sys.stdin.readline()
if line:
    req = json.loads(line)
    draw_pareto(req["data"], req["path"])
"""


class PlotProcess:
    """One helper process (module docstring); a context manager that ends it on exit."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env, text=True)
        except OSError:
            self.proc = None
        self.path: Path | None = None

    def draw(self, data: dict, path: str | Path) -> None:
        """Ask for ``data``'s figure at ``path`` (returns at once)."""
        self.path = Path(path)
        if self.proc is None:
            return
        try:
            self.proc.stdin.write(json.dumps({"data": data, "path": str(path)}) + "\n")
            self.proc.stdin.close()
        except OSError:  # the helper died early: wait() reports it
            pass

    def wait(self, timeout_s: float = 120.0) -> bool:
        """True when the helper drew the figure (the file exists), False otherwise."""
        if self.proc is None:
            return False
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False
        return rc == 0 and self.path is not None and self.path.exists()

    def close(self) -> None:
        """End the helper if it still runs (nothing drawn, or the caller gave up)."""
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> "PlotProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
