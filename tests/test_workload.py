"""Request generation: arrival processes, length distributions, prefix cache, trace files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from simulator.workload import generate_workload, sample_lengths
from workloads.traces import read_trace_file
from workloads.deployment import Workload


def wl(**kw) -> Workload:
    return Workload.model_validate(yaml.safe_load(yaml.safe_dump(kw)))


def rngs(seed=0):
    a, b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return a, b


def test_poisson_rate_and_count():
    w = generate_workload(wl(arrival={"kind": "poisson", "rate_per_s": 50.0}, num_requests=20000), *rngs())
    gaps = np.diff(w.arrival_s)
    assert w.num_requests == 20000
    assert gaps.mean() == pytest.approx(1 / 50.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


def test_gamma_arrivals_have_requested_cv():
    w = generate_workload(wl(arrival={"kind": "gamma", "rate_per_s": 10.0, "cv": 3.0}, num_requests=50000), *rngs(1))
    gaps = np.diff(w.arrival_s)
    assert gaps.mean() == pytest.approx(0.1, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)


def test_duration_bounds_arrivals():
    w = generate_workload(wl(arrival={"kind": "poisson", "rate_per_s": 100.0}, duration_s=30.0), *rngs())
    assert w.arrival_s.max() <= 30.0
    assert w.num_requests == pytest.approx(3000, rel=0.1)
    both = generate_workload(wl(arrival={"kind": "poisson", "rate_per_s": 100.0}, duration_s=30.0,
                                num_requests=50), *rngs())
    assert both.num_requests == 50


def test_length_distributions():
    rng = np.random.default_rng(0)
    ln = wl(arrival={"kind": "poisson", "rate_per_s": 1.0}, num_requests=1,
            prompt_tokens={"kind": "lognormal", "mean_tokens": 1000, "cv": 0.5, "max_tokens": 100000}).prompt_tokens
    x = sample_lengths(ln, 200000, rng)
    assert x.mean() == pytest.approx(1000, rel=0.02) and x.std() / x.mean() == pytest.approx(0.5, rel=0.05)
    un = wl(arrival={"kind": "poisson", "rate_per_s": 1.0}, num_requests=1,
            prompt_tokens={"kind": "uniform", "min_tokens": 3, "max_tokens": 9}).prompt_tokens
    u = sample_lengths(un, 10000, rng)
    assert u.min() == 3 and u.max() == 9
    capped = wl(arrival={"kind": "poisson", "rate_per_s": 1.0}, num_requests=1,
                prompt_tokens={"kind": "lognormal", "mean_tokens": 1000, "cv": 2.0, "max_tokens": 1500}).prompt_tokens
    assert sample_lengths(capped, 10000, rng).max() == 1500


def test_prefix_cache_hits_are_whole_blocks_and_leave_a_token():
    w = generate_workload(wl(arrival={"kind": "poisson", "rate_per_s": 1.0}, num_requests=1000,
                             prompt_tokens={"kind": "uniform", "min_tokens": 1, "max_tokens": 5000},
                             prefix_cache_hit_rate=0.6), *rngs())
    assert (w.cached_tokens % 64 == 0).all() and (w.cached_tokens < w.prompt_tokens).all()
    assert w.cached_tokens.sum() / w.prompt_tokens.sum() == pytest.approx(0.6, abs=0.02)


def test_samples_draw_lengths_per_sample_except_beams():
    base = dict(arrival={"kind": "poisson", "rate_per_s": 1.0}, num_requests=100, samples_per_request=4,
                output_tokens={"kind": "uniform", "min_tokens": 1, "max_tokens": 1000})
    w = generate_workload(wl(**base, sample_policy="first_finish"), *rngs())
    assert w.output_tokens.shape == (100, 4) and (w.output_tokens.std(axis=1) > 0).any()
    b = generate_workload(wl(**base, sample_policy="beam"), *rngs())
    assert (b.output_tokens == b.output_tokens[:, :1]).all()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_trace_files(tmp_path, fmt):
    rows = [{"arrival_s": 2.0, "prompt_tokens": 10, "output_tokens": 5, "cached_tokens": 4},
            {"arrival_s": 0.5, "prompt_tokens": 20, "output_tokens": 1, "cached_tokens": 0}]
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        path.write_text("arrival_s,prompt_tokens,output_tokens,cached_tokens\n2.0,10,5,4\n0.5,20,1,0\n")
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w = generate_workload(wl(arrival={"kind": "trace", "path": str(path)}), *rngs())
    assert w.arrival_s.tolist() == [0.5, 2.0]
    assert w.prompt_tokens.tolist() == [20, 10] and w.cached_tokens.tolist() == [0, 4]
    assert w.output_tokens[:, 0].tolist() == [1, 5]


def test_trace_missing_column_is_a_value_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("arrival_s,prompt_tokens\n0,1\n")
    with pytest.raises(ValueError, match="output_tokens"):
        read_trace_file(path)
