"""Reference checks of single kernels: DeepGEMM's published FP8 GEMM table against the `fused`
kernel set's stand-in for it (the measured H200 ``torch._scaled_mm`` table, transferred to H800
by peak ratio; ``workloads.kernel_sets``). Nothing is fitted to these rows: all are hold-out.
"""

from __future__ import annotations

from clustersim.checks.core import Check, Tolerance, load_reference, setting_text

__all__ = ["deepgemm_checks"]


def deepgemm_checks() -> list[Check]:
    """Every shape of ``kernels_deepgemm.yaml``: TFLOPS of one FP8 GEMM on an H800."""
    from calibration.resolve import resolve_profile
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel
    from workloads.ops import gemm

    ref = load_reference("kernels_deepgemm.yaml")
    cluster = get_cluster("h800-mpft")
    cm = CostModel(cluster=cluster, profile=resolve_profile("default", cluster.device.name))
    gap = ref.get("known_gap") or {}
    mechanism, gap_shapes = " ".join(str(gap.get("mechanism", "")).split()), set(gap.get("shapes", ()))
    bound = Tolerance.parse(ref["gap_bound"]) if "gap_bound" in ref else None
    out = []
    for key, tflops in ref["dense"].items():
        m, n, k = map(int, key.split("x"))
        seconds, src = cm.compute_seconds(gemm("g", m, n, k, dtype="fp8", layer="x", count=1))
        out.append(Check(family="kernels.deepgemm", id=f"{ref['id']}/{key}", source=ref["source"],
                         setting=setting_text({**ref["setting"], "MxNxK": key}), quantity="FP8 GEMM rate",
                         unit="TFLOPS", published=float(tflops), predicted=2.0 * m * n * k / seconds / 1e12,
                         tolerance=Tolerance.parse(ref["tolerance"]), role="holdout", source_status=ref["status"],
                         known_gap=mechanism if key in gap_shapes else "", gap_bound=bound, extra={"cost_source": src}))
    return out
