"""Reference checks of single kernels.

* ``kernels.deepgemm``: DeepGEMM's published FP8 GEMM table against the `fused` kernel set's
  stand-in for it (the measured H200 ``torch._scaled_mm`` table, transferred to H800 by peak
  ratio; ``workloads.kernel_sets``). Nothing is fitted to these rows: all are hold-out.
* ``kernels.attn_prefill_ctx``: every row with context (c > 0) of the profile's
  ``attn_prefill_ctx_bf16`` table (prefill chunks after cached context,
  ``calibration.bench.attn_chunk``) against what the profile's lookup answers for it
  (``attn_prefill_ctx_seconds``: the path the cost model takes for a prefill with context) when
  the lookup is built from the table's ``fit`` rows only; ``role`` is the row's split, so the
  hold-out rows judge the interpolation in context, new tokens, batch and heads (the 64q/8kv rows:
  the heads rule). The c = 0 rows are the interpolation's anchors, not a lookup the cost model
  makes (at c = 0 it reads ``attn_prefill_bf16``); benchmarks/chunk_attn_report.py compares them.
* ``kernels.grouped_mm_fp8``: every row of the profile's ``grouped_mm_fp8`` table (FP8 ragged
  grouped GEMM, ``torch._scaled_grouped_mm``, m tokens in each of G groups) against the lookup
  built from the table's ``fit`` rows (``grouped_gemm_seconds(..., "fp8")`` at G groups of m).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from clustersim.checks.core import Check, Tolerance, load_reference, setting_text

__all__ = [
    "attn_prefill_ctx_checks",
    "deepgemm_checks",
    "deepgemm_measured_checks",
    "flashmla_checks",
    "grouped_fp8_checks",
]


def _gap_text(gap: dict) -> tuple[str, Tolerance | None]:
    """A known-gap entry's mechanism (whitespace folded) and its hard bound (None: unbounded)."""
    return " ".join(str(gap.get("mechanism", "")).split()), Tolerance.parse(gap["bound"]) if "bound" in gap else None


def _measured_table(profile: str, table: str, how: str, provenance: str | None = None):
    """(the profile's ``table`` rows, the profile from its fit rows only, the table's accuracy
    target, the checks' source text) of one of our measured kernel tables; Unavailable while the
    profile has none (``how``: the device script and suite that measure it)."""
    from calibration.profile import load_profile
    from clustersim.checks.measured import accuracy_targets
    from clustersim.checks.systems import Unavailable

    where = Path(profile) if Path(profile).is_dir() else Path(str(resources.files("calibration") / "profiles" / profile))
    if not (where / f"{table}.csv").is_file():  # asked before loading every table of the profile
        raise Unavailable(f"profile {profile} has no {table} table yet (measure it: {how})")
    full = load_profile(profile)
    fit = load_profile(full.path if not full.shipped else full.name, fit_only=True)
    meta = full.metadata.get(provenance, full.metadata) if provenance else full.metadata
    source = (f"our microbenchmark: {meta.get('gpu_name', '?')}, torch {meta.get('torch', '?')}, "
              f"{str(meta.get('date_utc', '?'))[:10]} (profile {full.name}, {table}.csv; predicted from its fit rows)")
    return full.tables[table].to_pandas(), fit, accuracy_targets()["kernel_tables"][table], source


def deepgemm_checks() -> list[Check]:
    """Every shape of ``kernels_deepgemm.yaml``: TFLOPS of one FP8 GEMM on an H800."""
    from calibration.resolve import resolve_profile
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel
    from workloads.ops import gemm

    ref = load_reference("kernels_deepgemm.yaml")
    cluster = get_cluster("h800-mpft")
    # one kernel alone, as the published table times it: no in-step gap
    cm = CostModel(cluster=cluster, profile=resolve_profile("default", cluster.device.name), in_step_gap_s=0.0)
    gap = ref.get("known_gap") or {}
    mechanism, gap_shapes = _gap_text(gap)[0], set(gap.get("shapes", ()))
    bound = Tolerance.parse(ref["gap_bound"]) if "gap_bound" in ref else None
    out = _deepgemm_grouped_checks(ref, cm)
    for key, tflops in ref["dense"].items():
        m, n, k = map(int, key.split("x"))
        seconds, src = cm.compute_seconds(gemm("g", m, n, k, dtype="fp8", layer="x", count=1))
        out.append(Check(family="kernels.deepgemm", id=f"{ref['id']}/{key}", source=ref["source"],
                         setting=setting_text({**ref["setting"], "MxNxK": key}), quantity="FP8 GEMM rate",
                         unit="TFLOPS", published=float(tflops), predicted=2.0 * m * n * k / seconds / 1e12,
                         tolerance=Tolerance.parse(ref["tolerance"]), role="holdout", source_status=ref["status"],
                         known_gap=mechanism if key in gap_shapes else "", gap_bound=bound, extra={"cost_source": src}))
    return out


def _deepgemm_grouped_checks(ref: dict, cm) -> list[Check]:
    """DeepGEMM's grouped rows against the `fused` set's FP8 MoE GEMM (its ``fused_moe`` impl) on H800."""
    from workloads.op import GROUPED_GEMM, Op

    out = []
    gap = ref.get("grouped_known_gap") or {}
    gap_rows, (mechanism, bound) = set(gap.get("rows", ())), _gap_text(gap)
    for layout, rows in (ref.get("grouped") or {}).items():
        for key, tflops in rows.items():
            g_m, n, k = key.split("x")
            g, m = (int(v) for v in g_m.replace("g", "").split("_"))
            n, k = int(n), int(k)
            tokens = g * m
            op = Op("g", GROUPED_GEMM, {"groups": g, "m_per_group": m, "n": n, "k": k, "tokens_total": tokens,
                                        "active_groups": g},
                    2.0 * tokens * n * k, g * n * k + tokens * k, tokens * n * 2, dtype="fp8", layer="moe",
                    meta={"impl": "fused_moe"})
            seconds, src = cm.compute_seconds(op)
            out.append(Check(family="kernels.deepgemm", id=f"{ref['id']}/{layout}/{key}", source=ref["source"],
                             setting=setting_text({**ref["setting"], "layout": layout, "groups_M_N_K": key}),
                             quantity="FP8 grouped GEMM rate", unit="TFLOPS", published=float(tflops),
                             predicted=2.0 * tokens * n * k / seconds / 1e12,
                             tolerance=Tolerance.parse(ref["tolerance"]), role="holdout", source_status=ref["status"],
                             known_gap=mechanism if f"{layout}/{key}" in gap_rows else "",
                             gap_bound=bound if f"{layout}/{key}" in gap_rows else None, extra={"cost_source": src}))
    return out


def attn_prefill_ctx_checks(profile: str = "h200") -> list[Check]:
    """One check per row with context of ``profile``'s ``attn_prefill_ctx_bf16`` (microseconds); Unavailable
    while the profile has no such table (measure it with benchmarks/device_chunk_attn.sh)."""
    from calibration.chunk_lookup import CTX_TABLE

    table, fit, target, source = _measured_table(profile, CTX_TABLE,
                                                 "benchmarks/device_chunk_attn.sh, suite attn_prefill_ctx")
    tol = Tolerance.parse(target["tolerance"])
    out = []
    for r in table[table.context > 0].itertuples(index=False):
        hq, hkv, dqk, dv = int(r.heads_q), int(r.heads_kv), int(r.head_dim_qk), int(r.head_dim_v)
        got = fit.attn_prefill_ctx_seconds(int(r.batch), int(r.new), int(r.context), hq, hkv, dqk, dv)
        out.append(Check(family="kernels.attn_prefill_ctx",
                         id=f"{hq}q{hkv}kv-d{dqk}-{dv}/B{int(r.batch)}/n{int(r.new)}/c{int(r.context)}",
                         source=source, setting=f"{r.backend}, {r.gqa_impl}", quantity="attention time of one layer",
                         unit="us", published=float(r.seconds) * 1e6, predicted=None if got is None else got[0] * 1e6,
                         tolerance=tol, role=str(r.split), source_status="measured",
                         extra={"cost_source": None if got is None else got[1]}))
    return out


def _row_check(family: str, rid: str, row, got, gap: dict, tol: Tolerance, source: str, setting: str,
               quantity: str) -> Check:
    """One check of a measured kernel-table row (its ``seconds`` and ``split``) against the lookup's
    answer ``got`` ((seconds, source) or None), in microseconds, with its known-gap entry ``gap``."""
    mechanism, bound = _gap_text(gap)
    return Check(family=family, id=rid, source=source, setting=setting, quantity=quantity, unit="us",
                 published=float(row.seconds) * 1e6, predicted=None if got is None else got[0] * 1e6, tolerance=tol,
                 role=str(row.split), source_status="measured", known_gap=mechanism, gap_bound=bound,
                 extra={"cost_source": None if got is None else got[1]})


def grouped_fp8_checks(profile: str = "h200") -> list[Check]:
    """One check per row of ``profile``'s ``grouped_mm_fp8`` table (microseconds); Unavailable while
    the profile has none (measure it with benchmarks/device_fp8_grouped.sh)."""
    from calibration.profile import FP8_GROUPED_TABLE

    table, fit, target, source = _measured_table(
        profile, FP8_GROUPED_TABLE, "benchmarks/device_fp8_grouped.sh, suite grouped_mm_fp8", "fp8_grouped_tables")
    tol = Tolerance.parse(target["tolerance"])
    gaps = target.get("known_gaps") or ()
    out = []
    for r in table.itertuples(index=False):
        g, m, n, k = int(r.groups), float(r.m_per_group), int(r.n), int(r.k)
        got = fit.grouped_gemm_seconds(g, m, n, k, "fp8")
        shape = f"{n}x{k}"
        gap = next((x for x in gaps if shape in x.get("shapes", (shape,)) and m in x.get("m_per_group", (m,))), {})
        out.append(_row_check("kernels.grouped_mm_fp8", f"{shape}/G{g}/m{m:g}", r, got, gap, tol, source,
                              "torch._scaled_grouped_mm, e4m3, rowwise scales, BF16 out", "grouped GEMM time"))
    return out


def deepgemm_measured_checks(profile: str = "h200") -> list[Check]:
    """One check per row of ``profile``'s ``deepgemm_fp8`` table (microseconds): DeepGEMM's dense and
    grouped FP8 kernels as the ``fused`` set times them from the profile's fit rows (masked rows of
    equal group sizes from the equal-size curves, routed rows from the routed ones; the equal-size
    curves answer the contiguous rows: the prefill layout is held out); Unavailable while the profile has
    none (measure it with benchmarks/device_deepgemm.sh)."""
    from calibration.deepgemm_lookup import DEEPGEMM_TABLE
    from workloads.op import GROUPED_GEMM, Op
    from workloads.ops import gemm

    table, fit, target, source = _measured_table(profile, DEEPGEMM_TABLE, "benchmarks/device_deepgemm.sh",
                                                 "deepgemm_fp8_table")
    tol = Tolerance.parse(target["tolerance"])
    gaps = target.get("known_gaps") or ()
    out = []
    for r in table.itertuples(index=False):
        kind, g, m, valid, n, k = str(r.kind), int(r.groups), int(r.m_per_group), int(r.valid_m), int(r.n), int(r.k)
        if kind == "dense":
            op = gemm("g", m, n, k, dtype="fp8", layer="x", count=1)
            op.meta["impl"] = "deepgemm"
        else:
            op = Op("g", GROUPED_GEMM, {"groups": g, "m_per_group": valid / g, "n": n, "k": k, "tokens_total": valid,
                                        "active_groups": g}, 2.0 * valid * n * k, g * n * k + valid * k, valid * n * 2,
                    dtype="fp8", layer="moe", meta={"impl": "fused_moe", "group_sizes": "routed" if kind == "routed" else "equal"})
        got = fit.op_seconds(op)
        rid = f"{kind}/{n}x{k}/g{g}/m{m}"
        gap = next((x for x in gaps if rid in x.get("rows", ())), {})
        out.append(_row_check("kernels.deepgemm_fp8", rid, r, got, gap, tol, source,
                              f"DeepGEMM {kind}, e4m3, 1x128 / 128x128 scales, BF16 out", "FP8 GEMM time"))
    return out


def flashmla_checks(profile: str = "h200") -> list[Check]:
    """One check per row of ``profile``'s ``mla_decode_flashmla_bf16`` table (microseconds): FlashMLA's
    dense decode as the ``fused`` set times it from the profile's fit rows (rows of 2 query tokens
    per sequence are read as twice the sequences, and held out); Unavailable while the profile has
    none (measure it with benchmarks/device_flashmla.sh)."""
    from workloads.op import MLA_DECODE, Op

    table, fit, target, source = _measured_table(profile, "mla_decode_flashmla_bf16", "benchmarks/device_flashmla.sh",
                                                 "flashmla_table")
    tol = Tolerance.parse(target["tolerance"])
    gaps = target.get("known_gaps") or ()
    out = []
    for r in table.itertuples(index=False):
        b, c, h, q = int(r.batch), int(r.context), int(r.heads_q), int(r.q_per_seq)
        dqk, dv = int(r.head_dim_qk), int(r.head_dim_v)
        kv = b * c * dqk * 2
        op = Op("attn", MLA_DECODE, {"batch": b, "context": c, "heads_q": h, "head_dim_qk": dqk, "head_dim_v": dv},
                2.0 * h * (dqk + dv) * b * q * c, b * q * h * dqk * 2 + kv, b * q * h * dv * 2, dtype="bf16",
                layer="x", meta={"mla": "absorbed", "kv_read_bytes": kv, "q_per_seq": q, "impl": "flashmla",
                                 "lengths": "equal"})  # the table's rows: every sequence of one length
        got = fit.op_seconds(op)
        rid = f"h{h}/q{q}/b{b}/c{c}"
        gap = next((x for x in gaps if rid in x.get("rows", ()) or c in x.get("context", ())), {})
        out.append(_row_check("kernels.flashmla", rid, r, got, gap, tol, source,
                              "FlashMLA dense decode, BF16 paged KV (blocks of 64), 576/512",
                              "MLA decode time of one layer"))
    return out
