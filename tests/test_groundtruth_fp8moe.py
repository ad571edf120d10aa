"""The FP8 MoE-layer ground truth (``--set fp8moe``): its point set and split, the FP8 layer's math
against a BF16 reference on CPU, a quick CPU run through the driver, and that every point is
predicted from its operator list (the FP8 expert op list of the eager kernel set)."""

from __future__ import annotations

import pandas as pd
import pytest

from calibration.groundtruth import cases as K
from calibration.groundtruth.workload import row_ops


def _points(quick=False):
    return [p for c in K.fp8moe_cases(quick) for p in c.points]


def test_fp8moe_points_split_and_span():
    pts = pd.DataFrame(_points())
    assert len(pts) == 2 * len(K.FP8_TOKENS) and set(pts.ep) == {4, 32}
    assert not pts.duplicated(list(K.MOE_FP8.key)).any()
    for _, g in pts.groupby("ep"):  # both halves reach both ends of the token range
        for _, h in g.groupby("split"):
            assert h.tokens_per_rank.min() <= 2 and h.tokens_per_rank.max() >= 4096


def test_every_fp8moe_point_is_predicted_as_fp8():
    for p in _points():
        work = row_ops(K.MOE_FP8.file, p)
        experts = [o for o in work.ops if o.name.endswith(("experts_gate_up", "experts_down"))]
        assert len(experts) == 2 and all(o.dtype == "fp8" for o in experts), p
        assert any(o.name.endswith("router") and o.dtype == "bf16" for o in work.ops)


def test_fp8_layer_computes_what_the_bf16_layer_does():
    """Quantising weights and activations to e4m3 (the FP8 block) changes a layer's output by FP8
    rounding only: compared with the BF16 block on the same weights and routing (CPU, the loop)."""
    torch = pytest.importorskip("torch")
    from calibration.bench.elementwise import quant_fp8_rowwise
    from calibration.groundtruth import configs as C
    from calibration.groundtruth.moe import Fp8MoEBlock, MoEBlock, make_route

    cfg = C.moe_config("tiny-moe", 1)
    ref = MoEBlock(cfg, "cpu", torch.Generator().manual_seed(0), impl="loop")
    try:
        fp8 = Fp8MoEBlock(cfg, "cpu", torch.Generator().manual_seed(0))
        route = make_route(cfg, 6, seed=5, device="cpu")
        x = torch.randn(route.rows, cfg.hidden, dtype=torch.bfloat16)
        q, s = quant_fp8_rowwise(x)
        got = fp8.routed_q(q, s, route, torch.empty_like(x)).float()
        shared = fp8.shared_q(q, s).float()
    except (RuntimeError, NotImplementedError) as exc:  # a torch without CPU float8 GEMMs
        pytest.skip(f"float8 GEMMs on CPU: {exc}")
    assert fp8.impl == "scaled_mm_loop"
    want = ref.routed(x, route, torch.empty_like(x)).float()
    rel = (got - want).norm() / want.norm()
    assert 0 < rel < 0.1, rel  # e4m3 rounding of weights and activations, not a different layer
    rel_shared = (shared - ref.shared(x).float()).norm() / ref.shared(x).float().norm()
    assert 0 < rel_shared < 0.1, rel_shared


@pytest.mark.parametrize("set_name,rows", [("fp8moe", {K.MOE_FP8.file: 3}),
                                           ("fp8dense", {K.DENSE_PREFILL_FP8.file: 2, K.DENSE_DECODE_FP8.file: 4})])
def test_fp8_sets_quick_cpu_run_and_resume(tmp_path, set_name, rows):
    pytest.importorskip("torch")
    from calibration.groundtruth.run import main

    args = ["--set", set_name, "--quick", "--out", str(tmp_path), "--device", "cpu"]
    try:
        assert main(args) == 0
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"float8 GEMMs on CPU: {exc}")
    for file, n in rows.items():
        df = pd.read_csv(tmp_path / file)
        assert len(df) == n and (df.seconds > 0).all()
    if set_name == "fp8moe":
        assert set(pd.read_csv(tmp_path / K.MOE_FP8.file).impl) == {"scaled_mm_loop"}
    assert (tmp_path / "groundtruth_metadata.json").exists()
    assert main(args) == 0  # resumes: nothing measured twice
    assert {f: len(pd.read_csv(tmp_path / f)) for f in rows} == rows


def test_quant_fp8_is_an_elementwise_op_of_the_suite():
    torch = pytest.importorskip("torch")
    from calibration.bench.elementwise import OPS, _make, quant_fp8_rowwise

    assert "quant_fp8" in OPS
    fn, nbytes = _make("quant_fp8", 4096 * 4, torch.device("cpu"))
    fn()
    assert nbytes == 3 * 4096 * 4 + 4 * 4
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    q, s = quant_fp8_rowwise(x)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (3, 1)
    assert float((q.float() * s - x.float()).abs().max()) < 0.07 * float(x.abs().max())


def test_fp8dense_points_and_predictions():
    prefill, decode = K.fp8dense_cases(False)
    assert {p["split"] for p in prefill.points} == {p["split"] for p in decode.points} == {"fit", "holdout"}
    for case in (prefill, decode):
        for p in case.points:
            work = row_ops(case.table.file, p)
            proj = [o for o in work.ops if o.kind == "gemm" and not o.name.startswith("head")]
            assert proj and all(o.dtype == "fp8" for o in proj), p
            assert sum(o.meta.get("op") == "quant_fp8" for o in work.ops) == 4  # qkv, o, gate_up, down inputs


def test_fp8_dense_model_runs_a_decode_step_and_refuses_unknown_dtypes():
    """The FP8 dense model (e4m3 projections, rowwise quantised inputs) runs a decode step to
    finite logits of the BF16 model's shape (CPU); an unknown dtype is refused with the choices."""
    torch = pytest.importorskip("torch")
    from calibration.groundtruth import configs as C
    from calibration.groundtruth.dense import DenseModel

    ref = DenseModel(C.TINY_DENSE, "cpu", seed=3)
    try:
        fp8 = DenseModel(C.TINY_DENSE, "cpu", seed=3, dtype="fp8")
        step = fp8.decode(2, 8)
        got = step().float()
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"float8 GEMMs on CPU: {exc}")
    want = ref.decode(2, 8)().float()
    assert got.shape == want.shape and torch.isfinite(got).all()
    with pytest.raises(ValueError, match="valid: bf16, fp8"):
        DenseModel(C.TINY_DENSE, "cpu", dtype="fp16")


@pytest.mark.parametrize("set_name", ["fp8moe", "fp8dense"])
def test_fp8_ground_truth_repeats_on_a_second_machine_start(set_name):
    """The shipped FP8 ground truth and its repeat (a second device call, same points) agree
    within a few percent: the hold-out errors are not run-to-run noise."""
    from pathlib import Path

    root = Path(__file__).parent / "data" / "measured"
    for table in (K.MOE_FP8, K.DENSE_PREFILL_FP8, K.DENSE_DECODE_FP8):
        first, repeat = root / set_name / table.file, root / "fp8_repeat" / set_name / table.file
        if not first.exists():
            continue
        key = list(table.key)
        j = pd.read_csv(first).merge(pd.read_csv(repeat), on=key, suffixes=("", "_rep"))
        assert len(j) == len(pd.read_csv(first))
        diff = (j.seconds_rep / j.seconds - 1).abs()
        assert diff.median() < 0.03 and diff.max() < 0.10, (table.file, diff.describe())
