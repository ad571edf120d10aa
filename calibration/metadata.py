"""Provenance sidecar (``metadata.json``) for calibration and ground-truth runs.

Records the GPU, driver, CUDA, torch and NCCL versions (and ``nvidia-smi topo -m`` on a
multi-GPU node), the date (UTC), the git sha (from the
environment variable ``CLUSTERSIM_GIT_SHA``; "unknown" otherwise), the host and the exact
command. torch is imported lazily and is optional (fields read "n/a" without it).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from calibration.store import write_json

REQUIRED_FIELDS = ("gpu_name", "driver", "cuda", "torch", "nccl", "date_utc", "git_sha",
                   "hostname", "command")


def git_sha() -> str:
    """``CLUSTERSIM_GIT_SHA`` if it holds a commit id (7-40 hex digits), else "unknown"."""
    raw = os.environ.get("CLUSTERSIM_GIT_SHA", "").strip().splitlines()
    sha = raw[0].strip() if raw else ""
    return sha if 7 <= len(sha) <= 40 and all(c in "0123456789abcdef" for c in sha.lower()) else "unknown"


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def _gpu_topology() -> str:
    """``nvidia-smi topo -m`` (which GPU pairs talk over NVLink), "n/a" without nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def collect(device: str = "cuda", argv: list[str] | None = None, extra: dict | None = None) -> dict:
    """Provenance for a run on ``device``; ``extra`` is merged in last."""
    meta: dict = {
        "gpu_name": "n/a", "driver": "n/a", "cuda": "n/a", "torch": "n/a", "nccl": "n/a",
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_sha": git_sha(),
        "hostname": socket.gethostname(),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]) if argv is None else argv),
        "python": platform.python_version(),
        "device": device,
    }
    try:
        import torch

        meta["torch"] = torch.__version__
        meta["cuda"] = torch.version.cuda or "n/a"
        if device.startswith("cuda") and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            meta.update(gpu_name=props.name, gpu_count=torch.cuda.device_count(),
                        sm_count=props.multi_processor_count,
                        gpu_memory_bytes=props.total_memory,
                        compute_capability=".".join(map(str, torch.cuda.get_device_capability(0))))
            try:
                meta["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
            except Exception:  # NCCL absent from this build
                pass
            meta["driver"] = _driver_version()
            if meta["gpu_count"] > 1:  # the fabric the collective tables were measured on
                meta["gpu_topology"] = _gpu_topology()
        else:
            meta["gpu_name"] = f"cpu ({platform.processor() or platform.machine()})"
    except ImportError:
        pass
    meta.update(extra or {})
    return meta


def write(path: Path, meta: dict) -> None:
    """Write (or merge into) a metadata.json; earlier runs are kept under ``runs``."""
    path = Path(path)
    if path.exists():
        old = json.loads(path.read_text())
        runs = old.pop("runs", [])
        runs.append({k: old[k] for k in ("date_utc", "command", "suites") if k in old})
        meta = {**meta, "runs": runs}
    write_json(path, meta)


def finish(path: Path, meta: dict) -> None:
    """Replace the record written at a run's start, keeping the history of earlier runs."""
    path = Path(path)
    runs = json.loads(path.read_text()).get("runs", []) if path.exists() else []
    if runs:
        meta = {**meta, "runs": runs}
    write_json(path, meta)
