"""``clustersim.api``: one dispatcher over typed jobs, the kind of a config told once, and the
same answers through a job, a convenience function and a loaded config."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustersim import api

ROOT = Path(__file__).resolve().parents[1]
LLAMA = ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml"
PLAN = ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml"
TRAIN = ROOT / "examples" / "train_deepseek-v3_h800_2048.yaml"
FEW = ("workload.num_requests=20",)


def test_validate_jobs_read_the_kind_from_the_file():
    for path, kind in ((LLAMA, "deployment"), (PLAN, "plan")):
        done = api.run_job(api.ValidateJob(path))
        assert done.kind == kind and done.result["kind"] == kind and done.source == str(path)
        assert api.config_report(done.config) == done.result  # the same report from the loaded config


def test_simulate_job_outcome_and_the_convenience_function_agree():
    done = api.run_job(api.SimulateJob(LLAMA, FEW))
    assert done.kind == "serving" and done.summary["kind"] == "serving"
    assert done.summary["config"]["workload"]["num_requests"] == 20
    assert done.summary["profile"]["name"] == done.profile.name
    assert api.simulate(LLAMA, FEW).requests.equals(done.result.requests)


def test_a_loaded_config_runs_as_its_file_does_and_refuses_overrides():
    dep = api.validate(LLAMA, FEW)
    from_file = api.run_job(api.SimulateJob(LLAMA, FEW, profile="none"))
    loaded = api.run_job(api.SimulateJob(dep, profile="none"))
    assert loaded.kind == "serving" and loaded.source is None and loaded.profile is None
    assert loaded.result.requests.equals(from_file.result.requests)
    assert loaded.summary["config"]["profile"] == from_file.summary["config"]["profile"] == "none"
    with pytest.raises(ValueError, match="--set overrides apply to a config file"):
        api.run_job(api.SimulateJob(dep, FEW))
    with pytest.raises(ValueError, match="not a config this job runs"):
        api.run_job(api.WhatIfJob(dep))


def test_prepare_validates_before_any_work():
    job = api.prepare(api.WhatIfJob(PLAN, ("slo.tpot_ms=50",), mode="sweep", parameter="tpot_ms", profile="none"))
    assert type(job.config).__name__ == "PlanConfig" and job.config.slo.tpot_ms == 50
    assert job.overrides == () and job.profile is None and job.config.profile == "none"
    with pytest.raises(ValueError, match="tpot_ms"):
        api.prepare(api.WhatIfJob(PLAN, ("slo.tpot_ms=-1",)))
    with pytest.raises(ValueError, match=r"plan"):
        api.prepare(api.WhatIfJob(LLAMA))  # a deployment is not a plan: one located line
    assert api.prepare(api.CheckJob()) == api.CheckJob()


def test_estimate_jobs_are_the_estimates():
    args = dict(model="llama-3.1-70b", hardware="h200", phase="decode", batch=8, context=1024, tp=4)
    done = api.run_job(api.EstimateJob("step", args))
    assert done.kind == "step" and done.result == api.estimate_step(**args)
    with pytest.raises(ValueError, match="unknown estimate 'nope' \\(valid: step, collective, dispatch"):
        api.run_job(api.EstimateJob("nope"))


def test_check_job_and_an_unknown_job():
    done = api.run_job(api.CheckJob(("accounting",)))
    assert done.kind == "check" and done.result.passed and {c.family for c in done.result.checks} == {"accounting"}
    assert "accounting" in api.format_checks(done.result)
    with pytest.raises(TypeError, match="not a job: str"):
        api.run_job("simulate")


def test_save_outputs_writes_only_into_an_out_dir(tmp_path):
    done = api.run_job(api.SimulateJob(LLAMA, FEW))
    assert api.save_outputs(None, done) == []
    out = api.prepare_out(tmp_path / "o")
    assert api.save_outputs(out, done) == ["summary.json", "requests.csv", "timeseries.csv"]
    assert out.created and sorted(p.name for p in out.path.iterdir()) == ["requests.csv", "summary.json",
                                                                          "timeseries.csv"]
    with pytest.raises(ValueError, match="writes no --out files"):
        api.save_outputs(out, api.run_job(api.EstimateJob("collective", dict(hardware="h800", op="all_reduce",
                                                                             gpus=8, bytes_per_rank=1e6))))


def test_the_package_exports_the_api():
    import clustersim

    assert all(getattr(clustersim, name) is getattr(api, name) for name in clustersim.__all__)
    assert set(clustersim.__all__) <= set(api.__all__)
