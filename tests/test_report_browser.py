"""``--report`` pages in a real browser: headless Chromium (Debian's ``chromium``, installed by
.ci/run) loads each report from disk with the network off; the page must draw every plot and log
nothing to the console, and a screenshot must show the plots drawn.

Set ``CLUSTERSIM_SCREENSHOTS=DIR`` to keep the screenshots (one PNG per report).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clustersim.cli import app

pytest.importorskip("plotly")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=3000"]

COMMANDS = {
    "simulate_serving": ["simulate", "examples/deepseek-v3_h800_pd-disagg.yaml", "--set", "workload.num_requests=2000"],
    "simulate_training": ["simulate", "examples/train_deepseek-v3_h800_2048.yaml"],
    "simulate_prefix_cache": ["simulate", "examples/sessions_llama-3.1-8b_h200_prefix-cache.yaml", "--set",
                              "workload.num_requests=600"],
    "plan": ["plan", "examples/plan_deepseek-v3_h200x32.yaml", "--set", "verify.top=2", "--set",
             "verify.num_requests=100"],
    "what_if": ["what-if", "examples/plan_deepseek-v3_h200x32.yaml", "--sweep", "tpot_ms", "--values", "30,50",
                "--set", "search.modes=[disaggregated]"],
    "check": ["check", "--only", "accounting", "--only", "topology", "--only", "comm.deepep", "--only",
              "comm.cm384", "--only", "measured"],
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = {}
    runner = CliRunner()
    for name, args in COMMANDS.items():
        d = tmp_path_factory.mktemp(name)
        res = runner.invoke(app, [*args, "--out", str(d), "--report"])
        assert res.exit_code == 0, (name, res.output)
        out[name] = d / "report.html"
    return out


def _chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_report_renders_in_chromium(name, reports, tmp_path):
    page = reports[name]
    text = page.read_text(encoding="utf-8")
    # one self-contained file: no external script, stylesheet or image
    assert not re.search(r"<script[^>]*\ssrc=|<link\s|<img\s", text)
    dom = _chromium(page, tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom")
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(0)))
    assert attrs.get("data-report-ready") == "1", attrs
    assert "data-report-errors" not in attrs, attrs["data-report-errors"]
    assert int(attrs["data-plots-expected"]) > 0
    assert attrs["data-plots-rendered"] == attrs["data-plots-expected"]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console

    png = tmp_path / f"{name}.png"
    shot = _chromium(page, tmp_path, "--window-size=1400,2400", f"--screenshot={png}")
    assert png.is_file(), shot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 40_000  # drawn, not blank
    keep = os.environ.get("CLUSTERSIM_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
