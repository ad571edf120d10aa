"""The public Python API of clustersim: the one surface the CLI (and a user) calls.

Jobs, one dispatcher
--------------------
Everything a command computes is a *job*, a frozen value that ``run_job`` dispatches::

    from clustersim import api
    done = api.run_job(api.SimulateJob("examples/deepseek-v3_h800_pd-disagg.yaml",
                                       overrides=("workload.num_requests=200",)))
    done.kind, done.summary["summary"]["goodput_rps"]

=============  ==============================================  ==========================  ======================
job            what                                            ``Outcome.kind``            ``Outcome.result``
=============  ==============================================  ==========================  ======================
SimulateJob    a deployment (serving) or a training job        serving, training           SimResult, TrainingResult
PlanJob        serving layouts under SLOs, or training layouts serving, training           PlanResult, DataFrame
WhatIfJob      capacity, a one-parameter sweep, hardware       capacity, sweep, compare    DataFrame
EstimateJob    a cost-model answer, no simulation              step, collective, ...       dict
ValidateJob    load and check any config, and report it        deployment, plan, training  dict (the report)
CheckJob       every reference check (``clustersim.checks``)   check                       CheckRun
CalibrateJob   microbenchmarks into a profile directory        calibrate                   CalibrationRun
=============  ==============================================  ==========================  ======================

Whether a config is a serving deployment, a training job or a plan is decided once, in
``clustersim.run.load`` (from the file's data, or a loaded config's type); the jobs and the
CLI read ``Outcome.kind``. Jobs return data and write no file, except ``CalibrateJob``, whose
product is its profile directory (``calibration.store``, and ``clustersim.outputs`` for the
``--check`` files).

The CLI's surface
-----------------
Besides the jobs the CLI uses only what is listed in ``__all__``: ``load_config`` and
``prepare`` (read or validate a config before the progress bars start, so a bad file is one
line), ``progress_bars`` / ``progress_mode`` (``clustersim.progress``), ``prepare_out`` and
``save_outputs`` (``clustersim.outputs``, the one writer; ``--report`` pages from
``clustersim.report``), ``to_json``, ``kv_table`` (a field/value table as rich prints it,
without importing rich: ``clustersim.texttable``) and the text formats of the checks. The
other modules of ``clustersim`` are this API's implementation: tests and benchmarks may import
them, the CLI does not (``tests/test_code_health.py``).

Shortcuts (``simulate``, ``plan``, ``validate``, ``estimate_*``, ``calibrate``, catalog
queries) run the same jobs (or their runners) and return their results.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from clustersim.describe import (config_report as _describe_config, deployment_report, hardware_list,
                                 hardware_report, model_list, model_report)
from clustersim.outputs import OutputDir, to_json
from clustersim.progress import progress_bars, progress_mode
from clustersim.texttable import kv_table

__all__ = [
    # jobs and their dispatcher
    "SimulateJob", "PlanJob", "WhatIfJob", "EstimateJob", "ValidateJob", "CheckJob", "CalibrateJob", "Job",
    "Outcome", "CalibrationRun", "ESTIMATES", "run_job", "prepare", "load_config",
    # presentation: progress, output files, reports, text
    "progress_bars", "progress_mode", "plan_progress", "frozen_heap",
    "OutputDir", "prepare_out", "require_report", "report_page", "save_outputs",
    "plot_helper",
    "to_json", "kv_table",
    "format_checks", "format_calibration_check",
    # convenience
    "simulate", "plan", "validate", "config_report", "calibrate", "calibrate_check",
    "estimate_step", "estimate_collective", "estimate_dispatch", "estimate_moe_layer", "estimate_attention",
    "estimate_serving", "hardware_list", "hardware_report", "model_list", "model_report", "deployment_report",
]


# ------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class SimulateJob:
    """Simulate a deployment (serving) or a training job; ``config``: a path, a ``load_config``
    result or a loaded Deployment / TrainingJob. ``profile``: a name or directory overriding the
    config's ``profile:`` (as ``--profile``), or a profile object. ``report``: the outcome will be
    drawn as a report page (a training report draws the pipeline: its timeline is recorded)."""

    config: Any
    overrides: tuple[str, ...] = ()
    trace: bool = False
    profile: Any = None
    report: bool = False


@dataclass(frozen=True)
class PlanJob:
    """Search serving layouts of a PLAN.yaml under its SLOs, or training layouts of a training
    job by tokens/day (``max_layouts`` of them); a local pool of ``workers``, or Ray.
    ``profile``: a name or directory overriding the config's ``profile:``."""

    config: Any
    overrides: tuple[str, ...] = ()
    ray_address: str | None = None
    workers: int | None = None
    max_layouts: int = 400
    profile: str | Path | None = None


@dataclass(frozen=True)
class WhatIfJob:
    """``mode`` capacity (fewest devices for the load), sweep (``parameter`` over ``values``) or
    compare (``hardware``; empty: ``planner.whatif.DEFAULT_HARDWARE``) on a PLAN.yaml.
    ``profile``: a name or directory overriding the config's ``profile:``."""

    config: Any
    overrides: tuple[str, ...] = ()
    mode: str = "compare"
    parameter: str | None = None
    values: tuple[str, ...] | None = None
    hardware: tuple[str, ...] = ()
    profile: str | Path | None = None


@dataclass(frozen=True)
class EstimateJob:
    """The cost-model estimate ``what`` (a key of ``ESTIMATES``) with keyword ``args``."""

    what: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidateJob:
    """Load and fully check a deployment, plan or training job (the kind is read from its data)."""

    config: Any
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckJob:
    """Every reference check, or the families in ``only``."""

    only: tuple[str, ...] = ()


@dataclass(frozen=True)
class CalibrateJob:
    """Microbenchmarks into the profile directory ``out`` (``calibration.run``; needs torch);
    ``check``: then the self-check steps, predicted vs measured. ``progress``: auto, always, never."""

    out: str | Path
    suite: str = "all"
    quick: bool = False
    max_seconds: float = 0.0
    device: str = "cuda"
    quiet: bool = False
    check: bool = False
    progress: str = "auto"


Job = SimulateJob | PlanJob | WhatIfJob | EstimateJob | ValidateJob | CheckJob | CalibrateJob


@dataclass(frozen=True)
class CalibrationRun:
    """A calibration's exit status (0 ok, 1 a suite failed, 2 a usage error) and, with
    ``check``, the predicted-vs-measured table and its summary."""

    exit_code: int
    check_table: Any = None
    check_summary: dict | None = None


@dataclass(frozen=True)
class Outcome:
    """What a job produced: its ``kind`` (see the module table), the validated ``config``, the
    ``result``, the profile used and, for a simulation, the ``summary.json`` content; ``source``
    names the config file it came from (None for a loaded config)."""

    job: Any
    kind: str
    result: Any
    config: Any = None
    profile: Any = None
    summary: dict | None = None
    source: str | None = None


#: ``EstimateJob.what`` -> the estimate of ``clustersim.estimate`` that answers it (imported when
#: asked, like every heavy module here: ``clustersim --help`` imports none of them)
ESTIMATES: dict[str, str] = {
    "step": "estimate_step", "collective": "estimate_collective", "dispatch": "estimate_dispatch",
    "moe-layer": "estimate_moe_layer", "attention": "estimate_attention", "serving": "estimate_serving",
}


def __getattr__(name: str) -> Any:
    """The ``estimate_*`` functions, imported on first use."""
    if name in ESTIMATES.values():
        from clustersim import estimate

        return getattr(estimate, name)
    raise AttributeError(f"module 'clustersim.api' has no attribute {name!r}")


def load_config(path: str | Path) -> Any:
    """Read and parse a config file once (its kind detected from its data); every job takes the
    result in place of the path. Errors: one located ``ConfigError`` line."""
    from clustersim import run

    return run.load_config(path)


def prepare(job: Any) -> Any:
    """The job with its config loaded and validated (overrides and a profile name applied), so
    that a bad file is reported before any work starts; jobs without a config come back as
    they are."""
    from clustersim import run

    runner = {SimulateJob: "simulate", PlanJob: "plan", WhatIfJob: "whatif", ValidateJob: "validate"}.get(type(job))
    if runner is None:
        return job
    profile = getattr(job, "profile", None)
    loaded = run.load(job.config, job.overrides, *run.RUNS[runner], profile=profile)
    changes = {"profile": None} if isinstance(profile, (str, Path)) else {}  # a profile name: now the field
    return dataclasses.replace(job, config=loaded.config, overrides=(), **changes)


def run_job(job: Any, progress: Any = None) -> Outcome:
    """Run ``job`` (one of the job classes) and return its ``Outcome``. ``progress``: a
    ``simulator.progress.ProgressFn`` told how the long phases advance (``progress_bars``
    makes one), or None. User errors raise ValueError / LookupError with one line."""
    handler = _HANDLERS.get(type(job))
    if handler is None:
        raise TypeError(f"not a job: {type(job).__name__} (valid: {', '.join(c.__name__ for c in _HANDLERS)})")
    return handler(job, progress)


def _simulate(job: SimulateJob, progress: Any) -> Outcome:
    from clustersim import run

    loaded, result, prof = run.simulate(job.config, job.overrides, trace=job.trace, profile=job.profile,
                                        progress=progress, report=job.report)
    summary = run.run_summary(loaded.workload, loaded.config, result, prof)
    return Outcome(job, loaded.workload, result, loaded.config, prof, summary, loaded.where)


def _plan(job: PlanJob, progress: Any) -> Outcome:
    from clustersim import run

    loaded, result = run.plan(job.config, job.overrides, job.ray_address, job.workers, job.max_layouts, job.profile,
                              progress)
    return Outcome(job, loaded.workload, result, loaded.config, source=loaded.where)


def _whatif(job: WhatIfJob, progress: Any) -> Outcome:
    from clustersim import run

    loaded, df = run.whatif(job.config, job.overrides, job.mode, job.parameter, job.values, job.hardware,
                            job.profile, progress)
    return Outcome(job, job.mode, df, loaded.config, source=loaded.where)


def _estimate(job: EstimateJob, progress: Any) -> Outcome:
    from clustersim import estimate

    if job.what not in ESTIMATES:
        raise ValueError(f"unknown estimate {job.what!r} (valid: {', '.join(ESTIMATES)})")
    return Outcome(job, job.what, getattr(estimate, ESTIMATES[job.what])(**job.args))


def _validate(job: ValidateJob, progress: Any) -> Outcome:
    from clustersim import run

    loaded, training = run.validate(job.config, job.overrides)
    return Outcome(job, loaded.kind, _describe_config(loaded.kind, loaded.config, training), loaded.config,
                   source=loaded.where)


def _check(job: CheckJob, progress: Any) -> Outcome:
    from clustersim import checks

    return Outcome(job, "check", checks.run_checks(list(job.only) or None))


def _calibrate(job: CalibrateJob, progress: Any) -> Outcome:
    from calibration import run as calibration_run

    args = ["--out", str(job.out), "--suite", job.suite, "--device", job.device]
    if job.quick:
        args.append("--quick")
    if job.max_seconds:
        args += ["--max-seconds", str(job.max_seconds)]
    if job.quiet:
        args.append("--quiet")
    if job.check:
        args.append("--check")
    args += ["--progress", job.progress]
    code = calibration_run.main(args)
    if code or not job.check:
        return Outcome(job, "calibrate", CalibrationRun(code))
    from clustersim.outputs import write_profile_check

    table, summary = calibrate_check(job.out)
    write_profile_check(job.out, table, summary)
    return Outcome(job, "calibrate", CalibrationRun(code, table, summary))


_HANDLERS: dict[type, Callable[[Any, Any], Outcome]] = {
    SimulateJob: _simulate, PlanJob: _plan, WhatIfJob: _whatif, EstimateJob: _estimate, ValidateJob: _validate,
    CheckJob: _check, CalibrateJob: _calibrate,
}


# ------------------------------------------------------------------ presentation
def prepare_out(path: str | Path) -> OutputDir:
    """The ``--out`` directory, created and proven writable before any work (one-line ValueError)."""
    return OutputDir.prepare(path)


def require_report() -> None:
    """``--report`` needs plotly (the report extra): a one-line ValueError when it is missing."""
    from clustersim.report import require_plotly

    require_plotly()


def report_page(outcome: Outcome) -> str:
    """The ``--report`` page (HTML text, ``clustersim.report``) of a simulate, plan, what-if or
    check outcome."""
    from clustersim import report

    job = outcome.job
    if isinstance(job, SimulateJob):
        return report.simulate_report(outcome.kind, outcome.config, outcome.result, outcome.summary)
    if isinstance(job, PlanJob):
        if outcome.kind == "training":
            return report.training_plan_report(outcome.result, str(outcome.source or outcome.config.model))
        return report.plan_report(outcome.result)
    if isinstance(job, WhatIfJob):
        return report.whatif_report(outcome.kind, outcome.result, outcome.config)
    if isinstance(job, CheckJob):
        return report.check_report(outcome.result)
    raise ValueError(f"no report for a {type(job).__name__}")


def plot_helper() -> Any:
    """A ``clustersim.plotproc.PlotProcess`` (started now: it starts and imports Pillow while a
    plan runs; give it to ``save_outputs``, ``close()`` it after), or None without Pillow."""
    from clustersim import outputs

    if not outputs.can_draw_pareto():
        return None
    from clustersim.plotproc import PlotProcess

    return PlotProcess()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """``planner.executors.frozen_heap`` (the garbage collector leaves the heap held now alone and
    collects its youngest generation every 10^4 allocations, not 700) around a plan command: its
    start (imports, the plan's schemas, the profile) allocates ~10^6 objects, and under the default
    thresholds ~130 collections, one of them a full one, cost ~50 ms of its serial start; the plan
    itself runs in the same block (``planner.plan``: its own block nests in this one)."""
    from planner.executors import frozen_heap as planner_heap

    with planner_heap():
        yield


def plan_progress(progress: Any = None) -> Any:
    """A plan's ProgressFn: reports go on to ``progress`` (the bars, or None), and when the plan's
    verification begins (its workers then hold the cores while the planning process waits for
    them), the imports that writing the files and printing the report need are done there
    (``_PLAN_OUTPUT_MODULES``: ~0.05 s of CPU that otherwise ran after the plan, on one core)."""
    warmed: list[bool] = []

    def report(task: str, done: float, total: float | None, note: str = "") -> None:
        if task == "verify" and not warmed:
            warmed.append(True)
            import importlib

            for name in _PLAN_OUTPUT_MODULES:
                try:
                    importlib.import_module(name)
                except ImportError:  # an optional one (pyarrow, rich): its writer says so later
                    pass
        if progress is not None:
            progress(task, done, total, note)

    return report


#: what ``save_outputs`` and the CLI's plan report import after a serving plan (``plan_progress``)
_PLAN_OUTPUT_MODULES = ("pyarrow.parquet", "pandas.io.formats.csvs", "clustersim.csvtext", "planner.plot",
                        "rich.console", "rich.table")


def save_outputs(out: OutputDir | None, outcome: Outcome, report: bool = False, csv_rows: int | None = None,
                 plotter: Any = None) -> list[str]:
    """Write ``outcome``'s files into ``out`` (``clustersim.outputs``: the command's own set,
    atomically), with ``report.html`` when ``report``; returns the names written. The page is
    built first, so a report that cannot be drawn writes nothing. A serving plan's
    ``ranked.csv`` holds its first ``csv_rows`` rows (None: ``outputs.PLAN_CSV_ROWS``; 0: all);
    ``plotter``: a ``plot_helper`` that draws its Pareto PNG."""
    from clustersim import outputs

    page = report_page(outcome) if report else None
    if out is None:
        return []
    job = outcome.job
    if isinstance(job, SimulateJob):
        return outputs.write_simulation(out, outcome.kind, outcome.result, outcome.summary, job.trace, report=page)
    if isinstance(job, PlanJob) and outcome.kind == "training":
        return outputs.write_training_plan(out, outcome.result, report=page)
    if isinstance(job, PlanJob):
        return outputs.write_plan(out, outcome.result, report=page, plotter=plotter,
                                  csv_rows=outputs.PLAN_CSV_ROWS if csv_rows is None else csv_rows)
    if isinstance(job, WhatIfJob):
        return outputs.write_whatif(out, outcome.kind, outcome.result, report=page)
    if isinstance(job, CheckJob):
        return outputs.write_check(out, outcome.result, report=page)
    raise ValueError(f"a {type(job).__name__} writes no --out files")


def format_checks(run: Any, all_points: bool = False) -> str:
    """``clustersim check``'s text: every check, by family, with the summary."""
    from clustersim import checks

    return checks.format_text(run, all_points=all_points)


def format_calibration_check(run: CalibrationRun) -> str:
    """``calibrate --check``'s text: predicted vs measured per step, and the error summary."""
    from clustersim.validation import format_check

    return format_check(run.check_table, run.check_summary)


# ------------------------------------------------------------------ convenience
def simulate(config: Any, overrides: Iterable[str] = (), trace: bool = False, profile: Any = None) -> Any:
    """Simulate a deployment or training job (``SimulateJob``); returns the simulator's result
    (serving: ``SimResult`` with DataFrames and a summary; training: ``TrainingResult``)."""
    return run_job(SimulateJob(config, tuple(overrides), trace, profile)).result


def plan(config: Any, overrides: Iterable[str] = (), ray_address: str | None = None) -> Any:
    """Run the planner on a PLAN.yaml (``PlanJob``); returns PlanResult (a training job: the
    ranked training layouts)."""
    return run_job(PlanJob(config, tuple(overrides), ray_address)).result


def validate(path: str | Path, overrides: Iterable[str] = ()) -> Any:
    """Load and fully check a deployment, plan or training-job file (the kind is read from its
    data) with the loaders ``simulate`` and ``plan`` use; returns the frozen Deployment,
    PlanConfig or TrainingJob (``ValidateJob``'s checks, without its report)."""
    from clustersim import run

    return run.validate(path, overrides)[0].config


def config_report(config: Any) -> dict:
    """The report of a validated config, with its ``kind`` first (``ValidateJob``'s result)."""
    from clustersim import run

    return _describe_config(run.config_kind(config), config)


def calibrate(out: str | Path, suite: str = "all", quick: bool = False, max_seconds: float = 0.0,
              device: str = "cuda", quiet: bool = False, check: bool = False, progress: str = "auto") -> int:
    """Run the calibration microbenchmarks into ``out`` (``CalibrateJob``); returns the exit status
    (0 ok, 1 a suite failed, 2 a usage error: unknown suite, no CUDA, no torch; each reported as
    one line on stderr). ``check``: then measure and predict the self-check steps."""
    job = CalibrateJob(out, suite, quick, max_seconds, device, quiet, check, progress)
    return run_job(job).result.exit_code


def calibrate_check(profile_dir: str | Path) -> tuple[Any, dict]:
    """Predicted vs measured for the steps ``calibrate(check=True)`` measured, with the profile
    just written: (DataFrame of family, case, point, measured_s, predicted_s, error; summary)."""
    from clustersim.validation import predict_check

    return predict_check(profile_dir)
