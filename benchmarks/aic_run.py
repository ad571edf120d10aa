"""Running aiconfigurator from its own venv: timed subprocesses, ``cli exp`` experiments, and the
one patch its 0.12 CLI needs for balanced expert routing (helpers of ``vs_aiconfigurator.py``)."""

from __future__ import annotations

import csv
import os
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["AIC_MODEL", "AIC_QUESTION", "PATCHED_MAIN", "aic_cmd", "exp_answer", "run_aic_exp", "timed"]

#: aiconfigurator's spelling of the question (0.12: a Hugging Face id, resolved from its bundled configs)
AIC_MODEL = "deepseek-ai/DeepSeek-V3"
AIC_QUESTION = ["--total-gpus", "32", "--system", "h200_sxm", "--isl", "4000", "--osl", "500",
                "--ttft", "2000", "--tpot", "50"]


def aic_cmd(aic: str) -> list[str]:
    return [aic, "cli", "default", "--model", AIC_MODEL, *AIC_QUESTION, "--no-color"]


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd``; wall seconds, peak RSS (MiB, ``ru_maxrss`` of ``os.wait4``), rc, stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024.0, "rc": proc.returncode,
                "cpu_s": usage.ru_utime + usage.ru_stime, "stdout": out.read().decode(errors="replace"),
                "stderr_tail": err.read().decode(errors="replace")[-2000:]}


#: run aiconfigurator with every ModelConfig's MoE token distribution replaced (not a CLI option in 0.12)
PATCHED_MAIN = '''import os, sys
import aiconfigurator_core.sdk.config as c
_init = c.ModelConfig.__init__
def _init_with_distribution(self, *a, **k):
    _init(self, *a, **k)
    self.workload_distribution = os.environ["AIC_MOE_DISTRIBUTION"]
c.ModelConfig.__init__ = _init_with_distribution
from aiconfigurator.main import main
sys.argv = ["aiconfigurator"] + sys.argv[1:]
sys.exit(main())
'''


def run_aic_exp(aic: str, experiments: dict, out: Path, balanced: bool = False) -> dict:
    """Run ``aiconfigurator cli exp`` on ``experiments`` (name -> task fields); each one's
    rank-1 row of ``best_config_topn.csv`` (None where it found nothing)."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    spec = out / "exp.yaml"
    spec.write_text(yaml.safe_dump({"exps": list(experiments), **experiments}, sort_keys=False))
    cmd = [aic, "cli", "exp", "--yaml-path", str(spec), "--save-dir", str(out / "results"), "--no-color",
           "--log-level", "ERROR"]
    env = dict(os.environ)
    if balanced:
        (out / "patched_main.py").write_text(PATCHED_MAIN)
        cmd = [str(Path(aic).parent / "python"), str(out / "patched_main.py"), *cmd[1:]]
        env["AIC_MOE_DISTRIBUTION"] = "balanced"
    r = timed(cmd, env, cwd=out)
    (out / "stdout.txt").write_text(r["stdout"])
    if r["rc"] != 0:
        raise SystemExit(f"aiconfigurator exp failed (rc {r['rc']}): {' '.join(cmd)}\n{r['stderr_tail']}")
    rows = {}
    for name in experiments:
        found = sorted((out / "results").glob(f"**/{name}/best_config_topn.csv"))
        first = next(csv.DictReader(found[-1].open()), None) if found else None
        rows[name] = first
    return rows


def exp_answer(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {"tokens_per_s_per_gpu": float(row["tokens/s/gpu"]), "tokens_per_s_per_user": float(row["tokens/s/user"]),
            "ttft_ms": float(row["ttft"]), "tpot_ms": float(row["tpot"]), "request_rate": float(row["request_rate"]),
            "gpus": int(row["num_total_gpus"]),
            "layout": f"{row['(p)workers']}P x {row['(p)parallel']} (bs {row['(p)bs']}) + {row['(d)workers']}D x "
                      f"{row['(d)parallel']} (bs {row['(d)bs']})"}
