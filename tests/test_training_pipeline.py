"""Pipeline schedules: closed forms (DualPipe README table) and the DES against them (oracle)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.training.pipeline import (
    StageTimes,
    build_schedule,
    bubble_1f1b,
    bubble_dualpipe,
    bubble_zb1p,
    closed_form_bubble,
    memory_multiples,
    pipeline_stages,
    simulate_pipeline,
)


# ---------------------------------------------------------------- closed forms (dualpipe.bubbles)
def test_bubble_formulas_exact():
    assert bubble_1f1b(8, 1.0, 2.0) == 21.0  # (PP-1)(F+B)
    assert bubble_zb1p(8, 1.0, 2.0, 1.0) == 7.0  # (PP-1)(F+B-2W)
    assert bubble_dualpipe(8, 2.5, 2.0, 1.0) == 4.5  # (PP/2-1)(F&B+B-3W)
    assert bubble_dualpipe(16, 3.0, 2.0, 0.5) == 7 * 3.5
    assert closed_form_bubble("dualpipev", 8, 1, 2, 1, 2.5) == bubble_dualpipe(8, 2.5, 2, 1)


def test_memory_multiples_table():
    assert memory_multiples("1f1b", 16) == {"params": 1.0, "activations": 16.0, "devices": 16.0}
    assert memory_multiples("zb1p", 16) == {"params": 1.0, "activations": 16.0, "devices": 16.0}
    assert memory_multiples("dualpipe", 16) == {"params": 2.0, "activations": 17.0, "devices": 16.0}
    assert memory_multiples("dualpipev", 16) == {"params": 2.0, "activations": 17.0, "devices": 8.0}
    with pytest.raises(ValueError, match="valid: 1f1b"):
        memory_multiples("gpipe", 4)


# ---------------------------------------------------------------- DES oracle on uniform stages
CASES = [(4, 8, 1.0, 2.0, 1.0), (8, 20, 1.0, 2.0, 0.7), (8, 16, 1.5, 3.0, 1.0), (6, 24, 1.0, 1.0, 0.5),
         (16, 40, 1.0, 2.0, 1.0), (4, 4, 2.0, 2.0, 1.0)]


@pytest.mark.parametrize("schedule", ["1f1b", "zb1p"])
@pytest.mark.parametrize("pp,m,f,b,w", CASES)
def test_des_reproduces_1f1b_and_zb1p_bubbles(schedule, pp, m, f, b, w):
    run = simulate_pipeline(schedule, pp, m, StageTimes.uniform(pp, f, b, w))
    expected = closed_form_bubble(schedule, pp, f, b, w)
    for idle in run.idle_s:
        assert idle == pytest.approx(expected, abs=1e-9)
    assert run.makespan_s == pytest.approx(m * (f + b) + expected)


@pytest.mark.parametrize("schedule", ["dualpipe", "dualpipev"])
@pytest.mark.parametrize("pp,m,t,fb", [(4, 8, 1.0, 2.0), (8, 20, 1.0, 2.4), (8, 16, 0.5, 1.5), (16, 40, 1.0, 2.4),
                                        (6, 24, 2.0, 5.0), (16, 32, 1.0, 3.0)])
def test_des_reproduces_dualpipe_bubble_when_f_bi_w_equal(schedule, pp, m, t, fb):
    """The README formula holds exactly for F = B_input = W (B = 2W), any F&B in [max, F+B]."""
    stages = pipeline_stages(schedule, pp)
    run = simulate_pipeline(schedule, pp, m, StageTimes.uniform(stages, t, 2 * t, t, fb))
    expected = closed_form_bubble(schedule, stages, t, 2 * t, t, fb)
    assert max(run.idle_s[:pp]) == pytest.approx(expected, abs=1e-9)


def test_dualpipe_formula_is_approximate_for_unequal_chunks():
    """With W != F the DES and the README formula differ (documented in the README)."""
    run = simulate_pipeline("dualpipe", 8, 20, StageTimes.uniform(8, 1.0, 2.0, 0.7, 2.5))
    cf = closed_form_bubble("dualpipe", 8, 1.0, 2.0, 0.7, 2.5)
    assert max(run.idle_s) == pytest.approx(6.3, abs=1e-9)
    assert cf == pytest.approx(7.2)


def test_peak_inflight_activations_match_readme_multiples():
    pp = 8
    r1 = simulate_pipeline("1f1b", pp, 24, StageTimes.uniform(pp, 1, 2, 1))
    assert r1.peak_inflight == tuple(range(pp, 0, -1))  # first stage holds PP
    rz = simulate_pipeline("zb1p", pp, 24, StageTimes.uniform(pp, 1, 2, 1))
    assert max(rz.peak_inflight) == memory_multiples("zb1p", pp)["activations"]
    rd = simulate_pipeline("dualpipe", pp, 24, StageTimes.uniform(pp, 1, 2, 1, 2.4))
    assert set(rd.peak_inflight) == {memory_multiples("dualpipe", pp)["activations"]}  # PP + 1 everywhere
    rv = simulate_pipeline("dualpipev", pp // 2, 24, StageTimes.uniform(pp, 1, 2, 1, 2.4))
    assert set(rv.peak_inflight[: pp // 2]) == {memory_multiples("dualpipev", pp)["activations"]}


def test_trace_1f1b_two_stages_exact_event_log():
    run = simulate_pipeline("1f1b", 2, 2, StageTimes.uniform(2, 1.0, 2.0, 1.0), trace=True)
    assert run.timeline == (
        (0, "F0.0@0", 0.0, 1.0), (0, "F0.1@0", 1.0, 2.0), (1, "F0.0@1", 1.0, 2.0), (1, "B0.0@1", 2.0, 4.0),
        (0, "B0.0@0", 4.0, 6.0), (1, "F0.1@1", 4.0, 5.0), (1, "B0.1@1", 5.0, 7.0), (0, "B0.1@0", 7.0, 9.0),
    )


def test_p2p_delay_lengthens_the_critical_path():
    base = simulate_pipeline("1f1b", 4, 8, StageTimes.uniform(4, 1, 2, 1))
    slow = simulate_pipeline("1f1b", 4, 8, StageTimes.uniform(4, 1, 2, 1, p2p_s=0.1))
    # at least the first micro-batch's 3 hops each way; 1F1B's steady state waits on them too
    assert slow.makespan_s >= base.makespan_s + 2 * 3 * 0.1 - 1e-9
    assert slow.makespan_s == pytest.approx(34.6)


def test_dualpipe_rejects_bad_shapes():
    with pytest.raises(ValueError, match="DualPipe needs an even pp, got 5"):
        build_schedule("dualpipe", 5, 20)
    with pytest.raises(ValueError, match=">= 2 x pp"):
        build_schedule("dualpipe", 8, 10)


@settings(max_examples=25, deadline=None)
@given(pp=st.sampled_from([2, 4, 6, 8]), k=st.integers(2, 5), f=st.floats(0.2, 3), bi=st.floats(0.2, 3),
       w=st.floats(0.0, 3), schedule=st.sampled_from(["1f1b", "zb1p", "dualpipe", "dualpipev"]))
def test_every_rank_does_all_its_work_and_dualpipe_beats_1f1b(pp, k, f, bi, w, schedule):
    m = k * pp
    stages = pipeline_stages(schedule, pp)
    fb = max(f, bi + w) + 0.5 * min(f, bi + w)
    run = simulate_pipeline(schedule, pp, m, StageTimes.uniform(stages, f, bi + w, w, fb))
    devices = pp
    for r in range(devices):
        assert run.idle_s[r] >= -1e-9
        assert run.end_s[r] <= run.makespan_s + 1e-9
    if schedule in ("1f1b", "zb1p"):
        for busy in run.busy_s:
            assert busy == pytest.approx(m * (f + bi + w))
    if schedule == "dualpipe":
        ref = simulate_pipeline("1f1b", pp, m, StageTimes.uniform(pp, f, bi + w, w))
        assert run.makespan_s <= ref.makespan_s + 1e-9
