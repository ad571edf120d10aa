"""Prefill after cached context (chunked prefill, prefix hits): the ``attn_prefill_ctx`` suite, its
lookup, the check family that judges the lookup on the table's hold-out rows, and the chunked-prefill
ground truth. CPU only: tiny shapes for the torch paths, a synthetic table for the lookups (no H200
numbers are invented: the synthetic seconds come from a formula written here, never shipped)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibration.bench import attn_chunk as A
from calibration.bench.common import BenchContext
from calibration.chunk_lookup import CTX_TABLE, ChunkPrefillTable, pairs, varlen_pairs_factor
from calibration.groundtruth import cases as K

SMS = 132


def synthetic_seconds(b, n, c, hq, dqk, dv) -> float:
    """A made-up kernel: a launch floor plus FLOPs at a rate that grows with the blocks in flight
    (waves of 128-query tiles over 132 SMs), so time is affine in context at fixed (b, n) and not a
    power law in n or batch (interpolation error is real)."""
    blocks = b * hq * math.ceil(n / 128)
    fill = min(1.0, blocks / SMS) ** 0.7
    return 6e-6 + A.flops(b, n, c, hq, dqk, dv) / (300e12 * fill)


def write_synthetic_profile(d: Path) -> pd.DataFrame:
    """A profile directory holding only ``attn_prefill_ctx_bf16.csv`` over the suite's full grid."""
    ctx = BenchContext(out_dir=d, device="cuda")
    rows = []
    for p in A.points(ctx):
        b, n, c, hq, hkv, dqk, dv = (p[k] for k in A.KEY)
        t = synthetic_seconds(b, n, c, hq, dqk, dv)
        rows.append(dict(p, seconds=t, pairs=b * pairs(n, c), tflops=A.flops(b, n, c, hq, dqk, dv) / t / 1e12,
                         backend="synthetic", gqa_impl="none", method="synthetic"))
    d.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=A.COLUMNS)
    df.to_csv(d / f"{CTX_TABLE}.csv", index=False)
    (d / "metadata.json").write_text(json.dumps({"gpu_name": "NVIDIA H200", "note": "synthetic (tests)"}))
    return df


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synthetic_ctx_profile")
    write_synthetic_profile(d)
    return d


# ----------------------------------------------------------------------------- the suite


def test_grid_split_memory_and_plan():
    """The grid holds the three head configurations, fits the memory bound and the 90 s budget
    (with the plan's safety factor), and about half its points are hold-out: c = 0 anchors are fit,
    the 64q/8kv configuration is all hold-out."""
    from calibration.bench.plan import SAFETY, point_seconds

    ctx = BenchContext(out_dir=Path("."), device="cuda")
    pts = A.points(ctx)
    assert pts == A.points(ctx)  # deterministic
    df = pd.DataFrame(pts)
    assert set(zip(df.heads_q, df.heads_kv, df.head_dim_qk)) == {(32, 8, 128), (128, 128, 192), (64, 8, 128)}
    assert (df.apply(lambda r: A.kv_bytes(r.batch, r.new, r.context, r.heads_kv, r.head_dim_qk, r.head_dim_v),
                     axis=1) <= A.MAX_KV_BYTES).all()
    assert set(df[(df.context == 0) & (df.heads_q != 64)].split) == {"fit"}
    assert set(df[df.heads_q == 64].split) == {"holdout"}
    assert 0.4 <= (df.split == "holdout").mean() <= 0.6
    for (hq, split), g in df[df.heads_q != 64].groupby(["heads_q", "split"]):  # both halves span n and c
        assert {128, 4096} <= set(g.new) and g.context.max() >= 32768, (hq, split)
    assert {1, 8} <= set(df.batch) and df.context.max() == 65536
    seconds = sum(point_seconds(*p) for p in A.plan(ctx))
    assert 10 < seconds * SAFETY <= 90


def test_sdpa_chunk_is_lower_right_causal():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from calibration.groundtruth.common import chunk_backend, pick_chunk, sdpa_chunk

    g = torch.Generator().manual_seed(0)
    B, hq, hkv, n, c, d = 2, 4, 2, 5, 7, 16
    q = torch.randn(B, hq, n, d, generator=g)
    k, v = torch.randn(B, hkv, c + n, d, generator=g), torch.randn(B, hkv, c + n, d, generator=g)
    keep = torch.ones(n, c + n, dtype=torch.bool).tril(diagonal=c)  # query i sees keys <= c + i
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=keep)
    torch.testing.assert_close(sdpa_chunk(q, k, v, gqa=True), ref)
    # c = 0: plain causal prefill
    torch.testing.assert_close(sdpa_chunk(q, k[:, :, :n], v[:, :, :n], gqa=True),
                               F.scaled_dot_product_attention(q, k[:, :, :n].repeat_interleave(2, 1),
                                                              v[:, :, :n].repeat_interleave(2, 1), is_causal=True))
    assert chunk_backend(q, k, v, True) == "math_mask"  # CPU: the materialized mask
    assert pick_chunk(q, k, v) == ("enable_gqa", "math_mask")


def test_suite_quick_cpu_schema_split_and_resume(tmp_path):
    pytest.importorskip("torch")
    from calibration import run

    args = ["--out", str(tmp_path), "--quick", "--device", "cpu", "--suite", "attn_prefill_ctx", "--quiet"]
    assert run.main(args) == 0
    df = pd.read_csv(tmp_path / f"{CTX_TABLE}.csv")
    assert list(df.columns) == A.COLUMNS
    assert len(df) == len(A.points(BenchContext(out_dir=tmp_path, device="cpu", quick=True)))
    assert (df.seconds > 0).all() and set(df.split) == {"fit", "holdout"}
    assert (df.pairs == df.batch * (df.new * df.context + df.new * (df.new + 1) / 2)).all()
    assert set(df[df.context > 0].backend) == {"math_mask"}
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["complete"] is True and "attn_prefill_ctx" in meta["suite_seconds"]
    rows = len(df)
    assert run.main(args) == 0  # resume: nothing measured twice
    assert len(pd.read_csv(tmp_path / f"{CTX_TABLE}.csv")) == rows


# ----------------------------------------------------------------------------- the lookup


def _op(batch, new, ctx, model="llama-3.1-8b"):
    from workloads.layout import Layout
    from workloads.models import get_model
    from workloads.ops import BatchShape, step_ops

    ops = step_ops(get_model(model), BatchShape.prefill(batch, new, ctx), Layout(tp=1))
    return next(o for o in ops if o.kind == "attn_prefill")


def test_lookup_rules_on_a_synthetic_table(synth):
    from calibration.profile import load_profile

    p = load_profile(synth)
    t = lambda b, n, c, hq=32, hkv=8, dqk=128, dv=128: p.attn_prefill_ctx_seconds(b, n, c, hq, hkv, dqk, dv)[0]  # noqa
    assert t(4, 512, 8192) == pytest.approx(synthetic_seconds(4, 512, 8192, 32, 128, 128), rel=1e-9)  # measured
    mid = t(4, 512, 6144)  # linear in context between 4096 and 8192
    assert mid == pytest.approx((t(4, 512, 4096) + t(4, 512, 8192)) / 2, rel=1e-9)
    # beyond the measured contexts: pairs ratio from the largest measured one
    b, n = 8, 4096
    cmax = max(r["context"] for r in A.points(BenchContext(out_dir=synth)) if r["batch"] == b and r["new"] == n
               and r["heads_q"] == 32)
    assert cmax < 65536
    assert t(b, n, 65536) == pytest.approx(t(b, n, cmax) * pairs(n, 65536) / pairs(n, cmax), rel=1e-9)
    assert "pairs ratio" in p.attn_prefill_ctx_seconds(b, n, 65536, 32, 8, 128, 128)[1]
    # log-log in n and in batch between measured values; monotone in every axis
    assert t(4, 512, 8192) < t(4, 724, 8192) < t(4, 1024, 8192)
    assert t(2, 512, 8192) < t(3, 512, 8192) < t(4, 512, 8192)
    assert t(1, 512, 1024) < t(1, 512, 3000) < t(1, 512, 20000) < t(1, 512, 100000)
    # a short chunk costs a whole query tile; other heads as an equivalent batch
    assert t(1, 64, 8192) == pytest.approx(t(1, 128, 8192), rel=1e-9)
    assert t(1, 512, 8192, hq=16, hkv=4) == pytest.approx(t(0.5, 512, 8192), rel=1e-9)
    assert p.attn_prefill_ctx_seconds(1, 512, 8192, 16, 4, 96, 96) is None  # unmeasured head dims
    # unequal sequences: their pairs over the pairs at the means
    seq, cl = (1024, 16), (0, 30000)
    nm, cm = math.ceil(sum(seq) / 2), math.ceil(sum(cl) / 2)
    f = varlen_pairs_factor(nm, cm, seq, cl)
    assert f == pytest.approx((pairs(1024, 0) + pairs(16, 30000)) / (2 * pairs(nm, cm)))
    got = p.attn_prefill_seconds(2, nm, 32, 8, context=cm, seq_lens=seq, context_lens=cl)
    assert got[0] == pytest.approx(t(2, nm, cm) * f) and "unequal sequences" in got[1]
    assert varlen_pairs_factor(512, 4096, (512, 512), (4096, 4096)) == 1.0


def test_c0_anchor_only_where_the_same_kernel_ran():
    """MLA's heads run on cuDNN at c = 0 and on the memory-efficient kernel after context (torch's
    dispatch): the c = 0 row is then no anchor of the line in context."""
    rows = []
    for backend0, hq in (("flash_attention", 32), ("cudnn_attention", 128)):
        for c, t in ((0, 10e-6), (1024, 40e-6), (2048, 60e-6)):
            rows.append(dict(batch=1, new=512, context=c, heads_q=hq, heads_kv=hq // 4 if hq == 32 else hq,
                             head_dim_qk=128 if hq == 32 else 192, head_dim_v=128, seconds=t,
                             backend=backend0 if c == 0 else ("flash_attention" if hq == 32 else "efficient_attention")))
    tab = ChunkPrefillTable(pd.DataFrame(rows))
    same = tab.seconds((32, 8, 128, 128), 1, 512, 512)
    other = tab.seconds((128, 128, 192, 128), 1, 512, 512)
    assert same[0] == pytest.approx(25e-6) and "linear in context" in same[1]
    # below its lowest context (1024) the line through 1024 and 2048 continues: 40 - 20/2 us
    assert other[0] == pytest.approx(30e-6) and "linear in context below 1024" in other[1]


def test_below_the_lowest_context_never_under_the_pairs_ratio():
    """A line steeper than the pairs ratio would reach zero before c = 0: the pairs ratio (no
    fixed part) is the floor of the extrapolation below the lowest measured context."""
    rows = [dict(batch=1, new=128, context=c, heads_q=32, heads_kv=8, head_dim_qk=128, head_dim_v=128,
                 seconds=t, backend="flash_attention") for c, t in ((4096, 10e-6), (8192, 100e-6))]
    t, how = ChunkPrefillTable(pd.DataFrame(rows)).seconds((32, 8, 128, 128), 1, 128, 1024)
    assert t == pytest.approx(10e-6 * pairs(128, 1024) / pairs(128, 4096)) and "pairs ratio" in how


def test_holdout_rows_judge_the_rules(synth):
    """Built from the fit rows only, the lookup predicts the synthetic hold-out rows within a few
    percent (the checkerboard leaves a measured neighbour in context at every n)."""
    from calibration.profile import load_profile

    fit = load_profile(synth, fit_only=True)
    full = pd.read_csv(synth / f"{CTX_TABLE}.csv")
    assert set(fit.tables[CTX_TABLE]["split"]) == {"fit"} and len(fit.tables[CTX_TABLE]) < len(full)
    hold = full[full.split == "holdout"]
    err = np.array([fit.attn_prefill_ctx_seconds(r.batch, r.new, r.context, r.heads_q, r.heads_kv, r.head_dim_qk,
                                                 r.head_dim_v)[0] / r.seconds - 1 for r in hold.itertuples()])
    assert np.median(np.abs(err)) < 0.05 and np.abs(err).max() < 0.5


def test_op_path_costs_the_context(synth, tmp_path):
    """The bug: a prefill chunk after cached context was timed as if the context were absent."""
    import shutil

    from calibration.profile import load_profile
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel

    cluster = get_cluster("h200-node")
    h200 = load_profile("h200")
    # the shipped profile without its ctx table: an older profile
    older = tmp_path / "h200-older"
    shutil.copytree(h200.path, older, ignore=shutil.ignore_patterns(f"{CTX_TABLE}.csv"))
    shipped, synthetic = load_profile(older), load_profile(synth)
    free = CostModel(cluster, shipped).op_cost(_op(1, 512, 0))
    assert free.source.startswith("profile:h200-older:attn_prefill_bf16")
    prev = 0.0
    for ctx in (4096, 16384, 65536):
        op = _op(1, 512, ctx)
        assert op.shape["context"] == ctx and op.flops == pytest.approx(2 * 32 * 256 * 32 * pairs(512, ctx) / 32)
        # no ctx table: None from the profile, the fitted roofline (counting the context's pairs)
        assert shipped.op_seconds(op) is None and shipped.table_for(op) is None
        c = CostModel(cluster, shipped).op_cost(op)
        assert c.source.startswith("roofline:") and c.seconds > prev and op.flops / c.seconds < 989e12
        prev = c.seconds
        # with the table: read from it
        assert synthetic.table_for(op) == CTX_TABLE
        s = CostModel(cluster, synthetic).op_cost(op)
        assert s.source.startswith(f"profile:{synth.name}:{CTX_TABLE}")
        assert s.seconds == pytest.approx(synthetic_seconds(1, 512, ctx, 32, 128, 128), rel=1e-9)
    assert synthetic.floor_seconds(_op(1, 512, 4096)) == pytest.approx(min(synthetic._chunk.floor_s, 1.0))
    # MLA non-absorbed prefill after context reads the 128-head configuration
    mla = _op(1, 512, 4096, "deepseek-v3")
    assert synthetic.table_for(mla) == CTX_TABLE and "128q/128kv" not in synthetic.op_seconds(mla)[1]


def test_layering_takes_the_ctx_table_from_the_layer_that_has_it(synth, tmp_path):
    from calibration.profile import load_profile
    from calibration.resolve import LayeredProfile, resolve_profile

    shipped = load_profile("h200")
    over = resolve_profile(str(synth), "h200-sxm")  # a partial profile (only the ctx table) over the shipped one
    assert isinstance(over, LayeredProfile)
    with_ctx, without = _op(2, 1024, 8192), _op(2, 1024, 0)
    assert over.for_op(with_ctx) is over.primary and over.for_op(without) is over.fallback
    assert over.fallback.name == "h200"  # which holds the table too: the primary layer answers first
    assert over.op_seconds(with_ctx)[1].startswith(f"profile:{synth.name}:{CTX_TABLE}")
    # a partial profile without the table over one with it: the fallback answers context ops
    other = tmp_path / "gemm_only"
    other.mkdir()
    shutil.copy(Path(shipped.path) / "gemm_bf16.csv", other / "gemm_bf16.csv")
    layered = LayeredProfile(load_profile(other), load_profile(synth))
    assert layered.for_op(with_ctx) is layered.fallback and layered.table_for(with_ctx) == CTX_TABLE
    # neither layer has the table: the layer whose efficiency fit covers attention (the shipped one,
    # here as an older copy without the ctx table)
    older = tmp_path / "h200-older"
    shutil.copytree(shipped.path, older, ignore=shutil.ignore_patterns(f"{CTX_TABLE}.csv"))
    shipped = load_profile(older)
    gemm_only = LayeredProfile(load_profile(other), shipped)
    assert gemm_only.table_for(with_ctx) is None and gemm_only.for_op(with_ctx) is shipped
    assert "attn_prefill" in shipped.fitted_kinds and "attn_prefill" not in gemm_only.primary.fitted_kinds


def test_check_family_on_a_synthetic_profile(synth):
    from clustersim.checks import FAMILIES, FILES
    from clustersim.checks.kernels import attn_prefill_ctx_checks
    from clustersim.checks.systems import Unavailable

    assert FILES["kernels.attn_prefill_ctx"] and "kernels.attn_prefill_ctx" in FAMILIES
    cs = attn_prefill_ctx_checks(str(synth))
    table = pd.read_csv(synth / f"{CTX_TABLE}.csv")
    assert len(cs) == (table.context > 0).sum()  # every row with context; c = 0 rows are anchors
    roles = {c.role for c in cs}
    assert roles == {"fit", "holdout"}
    assert max(abs(c.error) for c in cs if c.role == "fit") < 1e-9  # a fit row is a node of its own lookup
    hold = [c for c in cs if c.role == "holdout"]
    assert all(c.predicted is not None for c in hold)
    assert np.median([abs(c.error) for c in hold]) < 0.05
    with pytest.raises(Unavailable):
        attn_prefill_ctx_checks(str(Path(synth).parent / "no_such_profile_dir"))


# ----------------------------------------------------------------------------- ground truth


def test_chunk_set_points_and_plan():
    from calibration.groundtruth.plan import SAFETY, plan_cases

    cases = K.chunk_cases(False)
    pts = [p for c in cases for p in c.points]
    assert len(pts) == 12 and {p["model"] for p in pts} == {"llama-3.1-8b"}
    assert {(p["batch"], p["new"], p["context"]) for p in pts} == {
        (b, n, c) for b in K.CHUNK_BATCH for n in K.CHUNK_NEW for c in K.CHUNK_CONTEXT}
    for b in K.CHUNK_BATCH:
        assert sorted(p["split"] for p in pts if p["batch"] == b) == ["fit"] * 3 + ["holdout"] * 3
    assert 5 < sum(r["seconds"] for r in plan_cases(cases)) * SAFETY <= 120


def test_chunk_step_equals_the_full_prefill():
    """The chunk step after a cache filled by a prefill of the first C tokens gives the logits of a
    prefill of all C + n tokens (RoPE positions, cache slots and the lower-right mask agree)."""
    torch = pytest.importorskip("torch")
    from dataclasses import replace

    from calibration.groundtruth import configs as C
    from calibration.groundtruth.dense import DenseModel

    m = DenseModel(replace(C.TINY_DENSE, layers=2), "cpu")
    ctx, new = 12, 5
    full = m.prefill(2, ctx + new)
    want = full()
    history = [(kc[:, :, :ctx], vc[:, :, :ctx]) for kc, vc in full.caches]
    step, info = m.chunk_prefill(2, new, ctx, tokens=full.tokens[:, ctx:], history=history)
    torch.testing.assert_close(step().float(), want.float(), rtol=0.05, atol=0.05 * want.float().abs().max().item())
    assert info["attn_backend"] == "math_mask"


def test_chunk_ground_truth_quick_cpu_and_prediction(tmp_path):
    pytest.importorskip("torch")
    from calibration import groundtruth
    from calibration.profile import load_profile
    from clustersim.validation import predict_measured

    assert groundtruth.main(["--out", str(tmp_path), "--set", "chunk", "--quick", "--device", "cpu"]) == 0
    df = pd.read_csv(tmp_path / K.DENSE_CHUNK.file)
    assert tuple(df.columns) == K.DENSE_CHUNK.columns and len(df) == len(K.chunk_cases(True)[0].points)
    assert set(df.split) == {"fit", "holdout"} and (df.seconds > 0).all()
    meta = json.loads((tmp_path / "groundtruth_metadata.json").read_text())
    assert meta["set"] == "chunk" and meta["excluded"]
    pred = predict_measured(tmp_path, load_profile("h200"))
    assert set(pred.family) == {"dense chunk prefill"} and (pred.predicted_s > 0).all()
    assert pred.point.str.contains("C=").all()


def test_every_planned_chunk_point_is_predicted_with_its_context():
    """Before device time is spent: every chunk point maps to a step whose attention carries the
    row's context (and is costed, by the roofline fit until the ctx table ships)."""
    from calibration.groundtruth.workload import row_ops
    from calibration.profile import load_profile
    from clustersim.validation import ops_compute_seconds
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel

    cm = CostModel(cluster=get_cluster("h200-node"), profile=load_profile("h200"))
    for c in K.chunk_cases(False):
        for p in c.points:
            work = row_ops(c.table.file, p)
            attn = [o for o in work.ops if o.kind == "attn_prefill"]
            assert len(attn) == 1 and attn[0].shape["context"] == p["context"] and attn[0].count == 32
            assert ops_compute_seconds(cm, work.ops) > 0


def test_estimate_step_prefill_with_context_through_the_cli(synth):
    """``clustersim estimate step --phase prefill --seq n --context c``: a chunk after c cached tokens;
    its attention grows with c (the shipped profile's measured ctx table; another via --profile DIR)."""
    from typer.testing import CliRunner

    from clustersim.cli import app

    def attn(ctx, *extra):
        res = CliRunner().invoke(app, ["estimate", "step", "--model", "llama-3.1-8b", "--hardware", "h200",
                                       "--phase", "prefill", "--seq", "512", "--context", str(ctx), "--json", *extra])
        assert res.exit_code == 0, res.output
        d = json.loads(res.output)
        assert d["context"] == ctx
        op = next(o for o in d["ops"] if o["kind"] == "attn_prefill")
        return op["seconds_each"], op["source"], d["seconds"]

    (a0, s0, t0), (a1, s1, t1), (a2, s2, t2) = attn(0), attn(4096), attn(65536)
    assert s0.startswith("profile:h200:attn_prefill_bf16") and s1.startswith(f"profile:h200:{CTX_TABLE}")
    assert a0 < a1 < a2 and t0 < t1 < t2 and a2 / a1 > 8
    a, s, _ = attn(65536, "--profile", str(synth))
    assert s.startswith(f"profile:{synth.name}:{CTX_TABLE}")
    # plus the in-step gap, which a partial profile without its own takes from the shipped one, as its tables
    from calibration.profile import load_profile
    from simulator.costmodel import profile_in_step_gap_s

    gap = profile_in_step_gap_s(load_profile("h200"))
    assert a == pytest.approx(synthetic_seconds(1, 512, 65536, 32, 128, 128) + gap, rel=1e-9)


def test_ship_script_copies_the_table_with_provenance(synth, tmp_path):
    """benchmarks/ship_chunk_attn.py: the table into the h200 profile with its run's provenance, the
    ground truth into measured/chunk; a --quick or non-H200 run is refused."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import ship_chunk_attn

    from calibration.profile import load_profile

    root = tmp_path / "repo"
    prof_dest = root / "calibration" / "profiles" / "h200"
    prof_dest.mkdir(parents=True)
    shipped_meta = Path(load_profile("h200").path) / "metadata.json"
    shutil.copyfile(shipped_meta, prof_dest / "metadata.json")
    run = tmp_path / "prof"
    shutil.copytree(synth, run)
    meta = {"gpu_name": "NVIDIA H200", "complete": True, "command": "clustersim calibrate --suite attn_prefill_ctx",
            "date_utc": "2027-01-01T00:00:00Z", "git_sha": "abc1234", "suite_seconds": {"attn_prefill_ctx": 40.0}}
    (run / "metadata.json").write_text(json.dumps(meta))
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "gt_dense_chunk.csv").write_text(",".join(K.DENSE_CHUNK.columns) + "\n")
    (gt / "groundtruth_metadata.json").write_text(json.dumps({"set": "chunk", "gpu_name": "NVIDIA H200"}))
    assert ship_chunk_attn.main(["--prof", str(run), "--gt", str(gt), "--root", str(root)]) == 0
    assert (prof_dest / f"{CTX_TABLE}.csv").read_text() == (synth / f"{CTX_TABLE}.csv").read_text()
    shipped = json.loads((prof_dest / "metadata.json").read_text())
    assert shipped["chunk_tables"]["git_sha"] == "abc1234" and shipped["chunk_tables"]["tables"] == [CTX_TABLE]
    assert shipped["gpu_name"] == json.loads(shipped_meta.read_text())["gpu_name"]  # the rest unchanged
    assert (root / "clustersim" / "data" / "measured" / "chunk" / "gt_dense_chunk.csv").exists()
    (run / "metadata.json").write_text(json.dumps({**meta, "quick": True}))
    with pytest.raises(SystemExit, match="quick"):
        ship_chunk_attn.main(["--prof", str(run), "--root", str(root)])
