"""Ray through the CLI (issue 11, item 8): a dead or silent address fails in one line within the
connect timeout, tasks Ray loses finish on the local pool, and ``--json`` stdout stays JSON.

The subprocess tests start their own local Ray instance (``--ray-address local``), as a user's
command would; nothing here leaves Ray running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("ray")

from clustersim.cli import app  # noqa: E402
from planner.executors import RAY_CONNECT_TIMEOUT_ENV, ray_connect_timeout_s  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLAN = str(ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml")
SMALL_PLAN = """
model: llama-3.1-8b
hardware: {cluster: h200-node, devices: 4}
workload: {arrival: {kind: poisson, rate_per_s: 2}, prompt_tokens: {kind: fixed, tokens: 512},
           output_tokens: {kind: fixed, tokens: 64}}
slo: {ttft_ms: 1000, tpot_ms: 30}
search: {devices_per_instance: [1, 2], attention_tp: [1, 2], micro_batches: [1], mtp: [false],
         decode_batch_per_rank: [16, 64], prefill_tokens_per_rank: [2048], max_instances: 2}
profile: null
"""


def _env(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE"):
        env.pop(name, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_address_is_one_line_at_once():
    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["plan", PLAN, "--ray-address", f"127.0.0.1:{_free_port()}", "--json"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no Ray cluster there" in lines[0] and "ray start --head" in lines[0], r.output
    assert time.monotonic() - t0 < 15


def test_connect_timeout_env_is_checked(monkeypatch):
    monkeypatch.setenv(RAY_CONNECT_TIMEOUT_ENV, "2.5")
    assert ray_connect_timeout_s() == 2.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv(RAY_CONNECT_TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=RAY_CONNECT_TIMEOUT_ENV):
            ray_connect_timeout_s()
    monkeypatch.delenv(RAY_CONNECT_TIMEOUT_ENV)
    assert ray_connect_timeout_s() == 20.0


def test_silent_address_times_out_with_a_clear_line(tmp_path):
    """Something listens but never answers like Ray (a firewall, the wrong service): the connect
    gives up after CLUSTERSIM_RAY_CONNECT_TIMEOUT_S seconds instead of hanging."""
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen(16)
        port = server.getsockname()[1]
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "clustersim.cli", "plan", PLAN, "--ray-address",
                               f"127.0.0.1:{port}", "--out", str(tmp_path / "out")], cwd=tmp_path,
                              env=_env(**{RAY_CONNECT_TIMEOUT_ENV: "3"}), capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(ours) == 1 and "no answer from Ray within 3 s" in ours[0] and RAY_CONNECT_TIMEOUT_ENV in ours[0]
    assert "RAY_AUTH_MODE is unset here" in ours[0] and "RAY_AUTH_MODE=token" in ours[0]
    assert elapsed < 60
    assert list((tmp_path / "out").iterdir()) == []


def test_lost_tasks_finish_locally_and_stdout_stays_clean(tmp_path):
    """A task whose Ray worker dies on every attempt runs on the fallback pool; Ray's
    worker-death notices go to stderr, so stdout holds only the program's JSON."""
    script = textwrap.dedent("""
        import json, os, time
        from planner.executors import RayExecutor, SerialExecutor

        def die_in_ray_worker(x, parent_pid):
            if x == 1 and os.getpid() != parent_pid:
                os._exit(1)
            return 2 * x

        with RayExecutor("local", max_retries=1, fallback=SerialExecutor(), num_cpus=1,
                         include_dashboard=False) as ex:
            out = ex.map(die_in_ray_worker, [(i, os.getpid()) for i in range(3)], desc="points")
            time.sleep(1.5)  # Ray reports the deaths asynchronously; they must still miss stdout
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == [0, 2, 4], proc.stdout
    assert "Ray lost 1 of 3 tasks (points) after 1 retries (WorkerCrashedError)" in proc.stderr
    assert "worker died" in proc.stderr  # Ray's notice went somewhere, and it was not stdout


def test_plan_json_on_ray_parses(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(SMALL_PLAN)
    proc = subprocess.run([sys.executable, "-m", "clustersim.cli", "plan", str(plan), "--ray-address", "local",
                           "--json"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["ranked"], data.keys()
