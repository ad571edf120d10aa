"""Report of a chunked-prefill device run: the ``attn_prefill_ctx`` table and the ``chunk`` ground truth.

    python benchmarks/chunk_attn_report.py PROFILE_DIR [GT_DIR]

* the table: rows per head configuration, backend and split; the check family
  ``kernels.attn_prefill_ctx`` (the lookup built from the fit rows against every row): median,
  p90 and worst |error| per configuration and split, and the five worst rows;
* its c = 0 rows against the shipped ``attn_prefill_bf16`` (the same kernel at c = 0, another run);
* the chunk ground truth (``gt_dense_chunk.csv``) predicted three ways: with PROFILE_DIR layered over
  the shipped profile (what ``--profile PROFILE_DIR`` uses), with the shipped profile alone (no ctx
  table: the fitted roofline), and with the context dropped from the attention op (the old bug).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.chunk_lookup import CTX_TABLE  # noqa: E402
from calibration.profile import load_profile  # noqa: E402
from calibration.resolve import resolve_profile  # noqa: E402


def _stats(e: pd.Series) -> str:
    a = e.abs()
    return f"{len(a):4d} pts  median {a.median():6.1%}  p90 {a.quantile(0.9):6.1%}  worst {a.max():6.1%}"


def table_report(prof_dir: Path) -> list[str]:
    from clustersim.checks.kernels import attn_prefill_ctx_checks

    df = pd.read_csv(prof_dir / f"{CTX_TABLE}.csv")
    lines = [f"== {CTX_TABLE}: {len(df)} rows", df.groupby(["heads_q", "heads_kv", "head_dim_qk", "backend", "split"])
             .size().to_string()]
    cs = pd.DataFrame([dict(id=c.id, role=c.role, err=c.error, measured_us=c.published, predicted_us=c.predicted,
                            how=c.extra.get("cost_source")) for c in attn_prefill_ctx_checks(str(prof_dir))])
    cs["config"] = cs.id.str.split("/").str[0]
    lines.append("-- lookup from the fit rows vs every row (check family kernels.attn_prefill_ctx)")
    for (cfg, role), g in cs.groupby(["config", "role"]):
        lines.append(f"  {cfg:20s} {role:8s} {_stats(g.err.dropna())}")
    for role, g in cs.groupby("role"):
        lines.append(f"  {'all':20s} {role:8s} {_stats(g.err.dropna())}")
    worst = cs.loc[cs.err.abs().sort_values(ascending=False).index[:5]]
    for r in worst.itertuples():
        lines.append(f"  worst {r.role:8s} {r.id:38s} measured {r.measured_us:9.1f} us predicted "
                     f"{r.predicted_us:9.1f} us {r.err:+6.1%}  ({r.how})")
    shipped = load_profile("h200")
    zero = df[df.context == 0]
    diff = [shipped.attn_prefill_seconds(int(r.batch), int(r.new), int(r.heads_q), int(r.heads_kv),
                                         int(r.head_dim_qk), int(r.head_dim_v)) for r in zero.itertuples()]
    e = pd.Series([d[0] / r.seconds - 1 for d, r in zip(diff, zero.itertuples()) if d is not None], dtype=float)
    if len(e):
        lines.append(f"-- c = 0 rows vs the shipped attn_prefill_bf16 lookup: {_stats(e)} (signed median {e.median():+.1%})")
    return lines


def _without_context(ops):
    """The attention ops as the cost model read them before the fix: context dropped from the lookup."""
    return [replace(o, shape={**o.shape, "context": 0}) if o.kind == "attn_prefill" else o for o in ops]


def gt_report(prof_dir: Path, gt_dir: Path) -> list[str]:
    from calibration.groundtruth.workload import row_ops
    from clustersim.validation import DEFAULT_CLUSTER, ops_compute_seconds
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel

    path = gt_dir / "gt_dense_chunk.csv"
    if not path.exists():
        return [f"== {path}: missing"]
    cluster = get_cluster(DEFAULT_CLUSTER)
    models = {"with table": CostModel(cluster, resolve_profile(str(prof_dir.resolve()), cluster.device.name)),
              "shipped (roofline)": CostModel(cluster, load_profile("h200")),
              "context dropped": CostModel(cluster, load_profile("h200"))}
    rows = []
    for r in pd.read_csv(path).to_dict("records"):
        work = row_ops(path.name, r)
        row = dict(point=work.point, split=r["split"], backend=r.get("attn_backend"), measured=r["seconds"])
        for name, cm in models.items():
            ops = _without_context(work.ops) if name == "context dropped" else work.ops
            row[name] = ops_compute_seconds(cm, ops) / r["seconds"] - 1
        rows.append(row)
    df = pd.DataFrame(rows)
    lines = [f"== chunk ground truth: {len(df)} whole steps (eager kernels); error of the prediction"]
    for r in df.to_dict("records"):
        errs = "  ".join(f"{n}: {r[n]:+6.1%}" for n in models)
        lines.append(f"  {r['split']:8s} {r['point']:22s} {r['measured'] * 1e3:9.2f} ms  {errs}  ({r['backend']})")
    for name in models:
        for split, g in df.groupby("split"):
            lines.append(f"  {name:20s} {split:8s} {_stats(g[name])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    prof = Path(argv[0])
    lines = table_report(prof) if (prof / f"{CTX_TABLE}.csv").exists() else [f"== {prof}: no {CTX_TABLE}.csv"]
    if len(argv) > 1:
        lines += gt_report(prof, Path(argv[1]))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
