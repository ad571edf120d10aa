"""A helper process that draws a plan's Pareto PNG (``planner.plot.draw_pareto``, Pillow).

``clustersim plan --out`` starts it before planning: its interpreter starts and imports
Pillow on a core the plan leaves idle while it is single-threaded (its own imports, the
profile), then waits. ``draw(data)`` hands it the figure's data (``planner.plot.pareto_data``:
plain lists, one JSON line on its stdin) and returns at once; ``png()`` returns the PNG bytes
it writes back on its stdout, for ``clustersim.outputs`` to write, or None when it could not
start or failed (the caller then draws in-process). It draws while the plan's process writes
``ranked.parquet`` and ``ranked.csv``. (Until session 11 it drew with matplotlib: ~0.9 s of
CPU, its import and artists, against ~0.15 s now.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

__all__ = ["PlotProcess"]

# the helper: Pillow first, then one request (or none: stdin closed), PNG bytes out
# (it leaves with ``os._exit``: the plan waits for its answer's end, not the interpreter's teardown)
_CHILD = """
import json, os, sys
from planner.plot import draw_pareto, ready
ready()
line = sys.stdin.readline()
if line:
    sys.stdout.buffer.write(draw_pareto(json.loads(line)))
sys.stdout.flush()
os._exit(0)
"""


class PlotProcess:
    """One helper process (module docstring); a context manager that ends it on exit."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env)
        except OSError:
            self.proc = None
        self._out: list[bytes] = []
        self._reader: threading.Thread | None = None

    def draw(self, data: dict) -> None:
        """Ask for ``data``'s figure (returns at once; ``png()`` collects it)."""
        if self.proc is None:
            return
        # read its answer while it draws, so a large PNG never fills the pipe
        self._reader = threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()), daemon=True)
        self._reader.start()
        try:
            self.proc.stdin.write((json.dumps(data) + "\n").encode())
            self.proc.stdin.close()
        except OSError:  # the helper died early: png() reports it
            pass

    def png(self, timeout_s: float = 120.0) -> bytes | None:
        """The PNG bytes the helper drew, or None (it could not start, failed or timed out)."""
        if self.proc is None or self._reader is None:
            return None
        self._reader.join(timeout_s)
        try:
            rc = self.proc.wait(timeout=1.0 if self._reader.is_alive() else timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            return None
        data = self._out[0] if self._out else b""
        return data if rc == 0 and data.startswith(b"\x89PNG") else None

    def close(self) -> None:
        """End the helper if it still runs (nothing drawn, or the caller gave up)."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
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
