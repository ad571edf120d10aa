"""Ship the results of ``benchmarks/device_chunk_attn.sh`` into the package, as measured.

    python benchmarks/ship_chunk_attn.py --prof OUT/prof --gt OUT/gt [--root .] [--note TEXT]

* ``attn_prefill_ctx_bf16.csv`` -> ``calibration/profiles/h200/`` (rows as measured), with its
  provenance (the run's ``metadata.json``: GPU, driver, CUDA, torch, NCCL, date, git sha, command,
  suite seconds) added to the shipped profile's ``metadata.json`` under ``chunk_tables``; no other
  table of the profile changes;
* ``gt_dense_chunk.csv`` and ``groundtruth_metadata.json`` -> ``clustersim/data/measured/chunk/``.

Either part may be left out (``--prof`` or ``--gt`` alone). Refuses a ``--quick`` run, an incomplete
one, or one not measured on an H200. Afterwards: ``pytest tests``, ``clustersim check`` and
``python docs/gen_numbers.py`` (the README's accuracy table reads ``measured/chunk``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = "attn_prefill_ctx_bf16"
GT_FILES = ("gt_dense_chunk.csv", "groundtruth_metadata.json")
PROVENANCE = ("command", "date_utc", "git_sha", "gpu_name", "sm_count", "driver", "cuda", "torch", "nccl", "python",
              "hostname", "suite_seconds", "complete")


def _usable(meta: dict, what: str) -> str | None:
    """Why a run's metadata cannot be shipped, or None."""
    if meta.get("quick"):
        return f"{what}: a --quick run"
    if "H200" not in str(meta.get("gpu_name", "")):
        return f"{what}: measured on {meta.get('gpu_name', '?')!r}, not an H200"
    if meta.get("complete") is False:
        return f"{what}: incomplete (stopped by its time budget); rerun the same command to resume it"
    return None


def ship_profile(prof: Path, root: Path, note: str) -> str:
    meta = json.loads((prof / "metadata.json").read_text())
    why = _usable(meta, str(prof))
    if why:
        raise SystemExit(why)
    dest = root / "calibration" / "profiles" / "h200"
    shutil.copyfile(prof / f"{TABLE}.csv", dest / f"{TABLE}.csv")
    shipped_path = dest / "metadata.json"
    shipped = json.loads(shipped_path.read_text())
    shipped["chunk_tables"] = {"tables": [TABLE], **{k: meta[k] for k in PROVENANCE if k in meta},
                               "copied_from": f"{prof} (benchmarks/device_chunk_attn.sh); rows as measured, no other "
                                              "table of this profile was replaced",
                               **({"note": note} if note else {})}
    shipped_path.write_text(json.dumps(shipped, indent=1) + "\n")
    return f"{TABLE}.csv -> {dest}/ (provenance in metadata.json chunk_tables)"


def ship_ground_truth(gt: Path, root: Path) -> str:
    meta = json.loads((gt / "groundtruth_metadata.json").read_text())
    why = _usable(meta, str(gt))
    if why:
        raise SystemExit(why)
    if meta.get("set") != "chunk":
        raise SystemExit(f"{gt}: set {meta.get('set')!r}, not 'chunk'")
    dest = root / "clustersim" / "data" / "measured" / "chunk"
    dest.mkdir(parents=True, exist_ok=True)
    for f in GT_FILES:
        shutil.copyfile(gt / f, dest / f)
    return f"{', '.join(GT_FILES)} -> {dest}/"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prof", type=Path, help="the run's profile directory ($OUT/prof)")
    p.add_argument("--gt", type=Path, help="the run's ground-truth directory ($OUT/gt)")
    p.add_argument("--root", type=Path, default=ROOT, help="repository root to write into")
    p.add_argument("--note", default="", help="a line of provenance to add (e.g. which machine, why this run)")
    a = p.parse_args(argv)
    if a.prof is None and a.gt is None:
        p.error("give --prof, --gt or both")
    done = ([ship_profile(a.prof, a.root, a.note)] if a.prof else []) + ([ship_ground_truth(a.gt, a.root)] if a.gt else [])
    print("\n".join(done))
    print("next: pytest tests; clustersim check; python docs/gen_numbers.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
