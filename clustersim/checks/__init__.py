"""The one registry of reference checks: every published figure in ``clustersim/data/reference``
and every point of our GPU ground truth in ``clustersim/data/measured``, each predicted with the
product's public functions and judged ok / known gap / fail (``clustersim.checks.core``).

``clustersim check`` prints them and the tests assert them (tests/test_reference_checks.py), so
what the command shows is what the suite holds the model to. ``FAMILIES`` maps a family name to
the function computing its checks; ``run_checks()`` runs them all (or some) and times each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pandas as pd

from clustersim.checks.comm import cm384_comm_checks, deepep_checks, isca_decode_limit_checks, nccl_checks
from clustersim.checks.kernels import (attn_prefill_ctx_checks, deepgemm_checks, deepgemm_measured_checks,
                                       flashmla_checks, grouped_fp8_checks)
from clustersim.checks.core import STATUSES, Check, Tolerance, load_reference, measured_dir, reference_dir
from clustersim.checks.measured import measured_checks
from clustersim.checks.prefix import prefix_cache_checks
from clustersim.checks.published import accounting_checks, catalog_checks, topology_checks
from clustersim.checks.systems import (Unavailable, engine_checks, planner_trend_checks, serving_checks,
                                       training_checks)

__all__ = ["deepgemm_checks", "FAMILIES", "FILES", "Check", "CheckRun", "Tolerance", "run_checks", "format_text", "load_reference",
           "reference_dir", "measured_dir", "STATUSES"]

#: family -> the function computing its checks (published first, then our ground truth)
FAMILIES: dict[str, Callable[[], list[Check]]] = {
    "accounting": accounting_checks,
    "topology": topology_checks,
    "catalog": catalog_checks,
    "comm.nccl": nccl_checks,
    "comm.deepep": deepep_checks,
    "comm.cm384": cm384_comm_checks,
    "comm.isca_decode_limit": isca_decode_limit_checks,
    "serving.estimate": serving_checks,
    "serving.engine": engine_checks,
    "planner.cm384_trend": planner_trend_checks,
    "training": training_checks,
    "prefix_cache": prefix_cache_checks,
    "kernels.deepgemm": deepgemm_checks,
    "kernels.attn_prefill_ctx": attn_prefill_ctx_checks,
    "kernels.grouped_mm_fp8": grouped_fp8_checks,
    "kernels.deepgemm_fp8": deepgemm_measured_checks,
    "kernels.flashmla": flashmla_checks,
    "measured": measured_checks,
}

#: family -> the reference file it reads (every file in ``reference_dir()`` has a family)
FILES: dict[str, str] = {
    "accounting": "isca_accounting.yaml", "topology": "isca_topology.yaml", "catalog": "isca_topology.yaml",
    "comm.nccl": "comm_nccl.yaml", "comm.deepep": "comm_deepep.yaml", "comm.cm384": "comm_cm384.yaml",
    "comm.isca_decode_limit": "comm_isca_decode_limit.yaml", "serving.estimate": "serving_throughput.yaml",
    "serving.engine": "serving_throughput.yaml", "planner.cm384_trend": "cm384_decode_trend.yaml",
    "training": "training_dsv3.yaml", "prefix_cache": "prefix_cache_day6.yaml", "kernels.deepgemm": "kernels_deepgemm.yaml", "measured": "../measured/accuracy_targets.yaml",
    "kernels.attn_prefill_ctx": "../measured/accuracy_targets.yaml",
    "kernels.grouped_mm_fp8": "../measured/accuracy_targets.yaml",
    "kernels.deepgemm_fp8": "../measured/accuracy_targets.yaml",
    "kernels.flashmla": "../measured/accuracy_targets.yaml",
}


@dataclass(frozen=True)
class CheckRun:
    """The checks of one run, the families that could not run (with why) and seconds per family."""

    checks: tuple[Check, ...]
    not_run: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for c in self.checks:
            out[c.status] += 1
        return out

    @property
    def passed(self) -> bool:
        """No check failed (known gaps do not fail)."""
        return self.counts["fail"] == 0

    def table(self) -> pd.DataFrame:
        """One row per check (``Check.to_dict``)."""
        return pd.DataFrame([c.to_dict() for c in self.checks])

    def summary(self) -> pd.DataFrame:
        """Per family and role: checks, ok / known gap / fail, median and worst |error|."""
        rows = []
        t = self.table()
        if t.empty:
            return t
        t["abs_error"] = t["error"].abs()
        for (fam, role), g in t.groupby(["family", "role"], sort=False):
            rows.append({"family": fam, "role": role, "checks": len(g),
                         **{s: int((g.status == s).sum()) for s in STATUSES},
                         "median_abs_error": float(g.abs_error.median()) if g.abs_error.notna().any() else None,
                         "worst_abs_error": float(g.abs_error.max()) if g.abs_error.notna().any() else None})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "counts": self.counts, "not_run": dict(self.not_run),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "summary": self.summary().to_dict(orient="records"),
                "checks": [c.to_dict() for c in self.checks]}


def run_checks(families: Iterable[str] | None = None) -> CheckRun:
    """Run the named families (default: all), in registry order. A family that cannot run here
    (``Unavailable``: e.g. no examples/ beside an installed package) is listed in ``not_run``."""
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"--only {unknown[0]!r}: unknown check family (valid: {', '.join(FAMILIES)})")
    checks, not_run, seconds = [], {}, {}
    for name in names:
        t0 = time.perf_counter()
        try:
            checks.extend(FAMILIES[name]())
        except Unavailable as exc:
            not_run[name] = str(exc)
        seconds[name] = time.perf_counter() - t0
    return CheckRun(tuple(checks), not_run, seconds)


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1e7 or abs(x) < 1e-2:
        return f"{x:.4g}"
    return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def _split_table(title: str, rows: list[dict], prefix: str) -> list[str]:
    """Lines of a per-family-and-split summary (``CheckRun.summary`` rows)."""
    out = ["", title, f"{'family':28s} {'split':8s} {'points':>6s} {'median':>8s} {'worst':>8s} {'ok':>5s} {'gap':>5s} "
                      f"{'fail':>5s}"]
    for r in rows:
        med, worst = r["median_abs_error"], r["worst_abs_error"]
        out.append(f"{r['family'].removeprefix(prefix):28s} {r['role']:8s} {r['checks']:6d} "
                   f"{'-' if med is None else f'{med:.1%}':>8s} {'-' if worst is None else f'{worst:.1%}':>8s} "
                   f"{r['ok']:5d} {r['known gap']:5d} {r['fail']:5d}")
    return out


def _gap_lines(run: CheckRun) -> list[str]:
    """Known gaps grouped by mechanism: the checks (or measured family) that miss, then why."""
    groups: dict[tuple[str, str], list[str]] = {}
    for c in run.checks:
        if c.known_gap and c.status == "known gap":
            measured = c.family.startswith("measured.")
            ids = groups.setdefault((c.family, c.known_gap), [])
            name = c.family if measured else c.id
            if name not in ids:
                ids.append(name)
    lines = []
    for (_, mechanism), ids in groups.items():
        what = ids[0] if len(ids) == 1 else f"{len(ids)} checks ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"
        lines.append(f"{what}: {mechanism}")
    return lines


#: families of our own measurements, summarised per split rather than listed point by point
_MEASURED_TABLES = ("kernels.attn_prefill_ctx", "kernels.grouped_mm_fp8", "kernels.deepgemm_fp8",
                    "kernels.flashmla")


def _summarised(family: str) -> bool:
    return family.startswith("measured.") or family in _MEASURED_TABLES


def format_text(run: CheckRun, all_points: bool = False) -> str:
    """The plain-text report: every published check (one line each, under its family and source),
    the communication families' fit and hold-out rows summarised apart, the measured ground truth
    and the measured kernel tables with a split summarised per family and split (``all_points``:
    every point too), known gaps with their mechanism, and a closing count line."""
    lines = []
    shown = [c for c in run.checks if all_points or c.status == "fail" or not _summarised(c.family)]
    width = max([58] + [len(c.id) for c in shown])
    head = (f"{'status':9s} {'role':7s} {'id':{width}s} {'published':>11s} {'predicted':>11s} {'error':>8s} "
            f"{'tol':>9s}  unit")
    family = source = None
    cited: set[str] = set()
    for c in shown:
        if c.family != family:
            family, source, cited = c.family, c.source, {c.source}
            lines += ["", f"== {family}: {c.source}", head]
        elif c.source != source:  # a family of several sources: cite each in full once
            source = c.source
            lines.append(f"-- {c.source if c.source not in cited else c.source.split(':')[0] + ' (above)'}")
            cited.add(c.source)
        err = "-" if c.error is None else f"{c.error:+.1%}"
        lines.append(f"{c.status:9s} {c.role:7s} {c.id:{width}s} {_num(c.published):>11s} {_num(c.predicted):>11s} "
                     f"{err:>8s} {c.tolerance.text():>9s}  {c.unit}")
    summ = run.summary()
    if len(summ):
        comm = summ[summ.family.str.startswith("comm.") & summ.role.isin(["fit", "holdout"])]
        if len(comm):
            lines += _split_table("== communication (published), per family and split: |error| and status counts",
                                  comm.to_dict("records"), "")
        tables = summ[summ.family.isin(_MEASURED_TABLES)]
        if len(tables):
            lines += _split_table("== measured kernel tables (lookup from the fit rows vs every row), per family and "
                                  "split: |error| and status counts", tables.to_dict("records"), "kernels.")
        meas = summ[summ.family.str.startswith("measured.")]
        if len(meas):
            lines += _split_table("== measured ground truth (our H200 runs), per family and split: |error| and status "
                                  "counts", meas.to_dict("records"), "measured.")
    gaps = _gap_lines(run)
    if gaps:
        lines += ["", "== known gaps (the mechanism the model lacks)"] + gaps
    for name, why in run.not_run.items():
        lines.append(f"not run: {name}: {why}")
    n = run.counts
    lines += ["", f"{n['ok']} ok, {n['known gap']} known gap, {n['fail']} fail "
                  f"({len(run.checks)} checks in {sum(run.seconds.values()):.1f} s)"]
    return "\n".join(lines).lstrip("\n")
