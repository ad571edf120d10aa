"""Measure a calibration profile: ``python -m calibration.run --out DIR [options]``
(``clustersim calibrate`` calls :func:`main`).

Runs the suites of ``calibration.bench.REGISTRY`` (``--suite all``, the default, or a comma
list) and writes one CSV per (op, dtype) into DIR plus ``metadata.json`` (provenance). Rows
already in a CSV are skipped, so a rerun resumes an interrupted run; ``--max-seconds`` stops
the suites cleanly when the budget is spent.

Distributed suites (``collectives``, ``moe_dispatch``) need two or more ranks: under
``torchrun --nproc-per-node N -m clustersim.cli calibrate ...`` every rank joins them and only
rank 0 writes; without torchrun they spawn one process per visible GPU, and are skipped (with
the launch command in the summary) on one GPU. On ``--device cpu`` they run with gloo in two
processes only when named (a code-path test: gloo measures no fabric).

``--check`` then measures a few whole-model steps into ``DIR/check/`` (``calibration.groundtruth``
set ``check``), which ``clustersim calibrate --check`` predicts with the new profile; with
``--max-seconds`` the last ``CHECK_RESERVE_S`` are kept for it.

Exit status: 0 when every suite ran, was skipped for a stated reason or stopped by the time
budget; 2 for a usage error (unknown suite, bad device, no CUDA with ``--device cuda``, no
torch), each as one line on stderr; 1 when a suite failed (the summary names it).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from calibration.bench import REGISTRY, SUITES, Suite, SuiteSkipped
from calibration.run_display import Display, SuiteResult, summary_lines, table_rows

LAUNCH_HINT = ("run under torchrun --nproc-per-node N -m clustersim.cli calibrate --out DIR "
               "--suite collectives,moe_dispatch (N = GPUs of the node)")


CHECK_RESERVE_S, CHECK_RESERVE_QUICK_S = 90.0, 10.0  # of --max-seconds, kept for --check


class UsageError(Exception):
    """A one-line user error (exit 2)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m calibration.run", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output directory (created; resumed if present)")
    p.add_argument("--suite", default="all", help=f"'all' or comma-separated suites ({', '.join(SUITES)})")
    p.add_argument("--quick", action="store_true", help="tiny grids (smoke tests, CPU tests)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--max-seconds", type=float, default=None, help="time budget; suites stop cleanly")
    p.add_argument("--gemm-dtypes", default="bf16,fp8,fp8_rowwise", help="dtypes for the gemm suite (bf16, fp8, fp8_rowwise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no suite messages")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bars on stderr: when it is a terminal (auto), always, never")
    p.add_argument("--cpu-ranks", type=int, default=2, help="gloo processes for distributed suites on CPU")
    p.add_argument("--check", action="store_true",
                   help="then measure a few whole-model steps into OUT/check (calibration.groundtruth set "
                        "'check'; clustersim calibrate --check predicts them); with --max-seconds the last "
                        f"{CHECK_RESERVE_S:.0f} s (quick: {CHECK_RESERVE_QUICK_S:.0f} s) are kept for them")
    return p.parse_args(argv)


def select_suites(spec: str) -> tuple[list[str], bool]:
    """(suite names in run order, whether they were named explicitly)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names or names == ["all"]:
        return list(SUITES), False
    unknown = [s for s in names if s not in REGISTRY]
    if unknown:
        raise UsageError(f"unknown suite(s) {', '.join(unknown)} (valid: all, {', '.join(SUITES)})")
    return list(dict.fromkeys(names)), True


def preflight(args: argparse.Namespace) -> str:
    """Checks that need torch; returns the device. Raises UsageError."""
    try:
        import torch
    except ImportError:
        raise UsageError("calibrate needs torch: pip install 'clustersim[calibrate]' (or any torch>=2.4)") from None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device {device!r} (valid: cuda, cpu)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA device is visible (use --device cpu for a CPU smoke run)")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a directory")
    return device


def _skip_reason(suite: Suite, device: str, explicit: bool, launch, local_rank0: bool) -> str | None:
    if suite.distributed:
        if launch is not None:
            return None
        if device.startswith("cuda"):
            import torch

            n = torch.cuda.device_count()
            return None if n >= 2 else f"{n} GPU here; {LAUNCH_HINT}"
        return None if explicit else ("CPU: gloo between processes of one host measures no fabric "
                                      "(name the suite to run its code path)")
    return None if local_rank0 else "not rank 0"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        names, explicit = select_suites(args.suite)
        device = preflight(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from calibration.bench.dist import torchrun_launch

    launch = torchrun_launch()
    rank0 = launch is None or launch.rank == 0
    if launch is not None and device.startswith("cuda"):
        import torch

        device = f"cuda:{launch.local_rank}"
        torch.cuda.set_device(launch.local_rank)
    shown = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    live = rank0 and not args.quiet and shown
    with Display(live, quiet=args.quiet or not rank0, force_terminal=args.progress == "always") as display:
        results, lines = _run(args, names, explicit, device, launch, rank0, display)
    for line in lines:  # after the bars are gone
        print(line)
    failed = [r for r in results if r.status == "failed"]
    if failed and rank0:
        print(f"error: {len(failed)} suite(s) failed: " + "; ".join(f"{r.name}: {r.note}" for r in failed),
              file=sys.stderr)
    return 1 if failed else 0


def _run(args, names: list[str], explicit: bool, device: str, launch, rank0: bool,
         display: Display) -> tuple[list[SuiteResult], list[str]]:
    """Run the suites; (results, summary lines: empty on ranks other than 0)."""
    from calibration import metadata
    from calibration.bench.common import BenchContext
    from calibration.store import ensure_dir

    out: Path = ensure_dir(args.out)
    t0 = time.monotonic()
    reserve = (CHECK_RESERVE_QUICK_S if args.quick else CHECK_RESERVE_S) if args.check else 0.0
    deadline = None if args.max_seconds is None else t0 + max(0.0, args.max_seconds - reserve)
    ctx = BenchContext(out_dir=out, device=device, quick=args.quick, deadline_s=deadline, log=display.log)
    suites = [REGISTRY[n] for n in names]
    # torchrun: the distributed suites first, all ranks together; then rank 0 alone
    suites.sort(key=lambda s: 0 if (s.distributed and launch is not None) else 1)
    meta_extra = {"suites": names, "quick": args.quick, "max_seconds": args.max_seconds,
                  "world_size": launch.world if launch else 1}
    if rank0:  # written first so an interrupted run keeps its provenance; rewritten at the end
        metadata.write(out / "metadata.json", metadata.collect(device, extra={**meta_extra, "complete": False}))
    before = table_rows(out)
    results = _run_suites(ctx, suites, args, explicit, launch, rank0, display)
    if not rank0:
        return results, []
    if args.check:  # whole-model steps into out/check, kept apart from the profile's tables
        results.append(_run_check(out, ctx.device, args, t0))
    after = table_rows(out)
    timings = {r.name: round(r.seconds, 1) for r in results if r.status in ("ok", "stopped")}
    meta = metadata.collect(device, extra={
        **meta_extra, "complete": all(r.status == "ok" for r in results), "suite_seconds": timings,
        "skipped": {r.name: r.note for r in results if r.status != "ok"}})
    metadata.finish(out / "metadata.json", meta)
    return results, summary_lines(out, results, before, after, time.monotonic() - t0, device, args.quick)


def _run_suites(ctx, suites: list[Suite], args, explicit: bool, launch, rank0: bool,
                display: Display) -> list[SuiteResult]:
    results: list[SuiteResult] = []
    spawn_later: list[Suite] = []
    for suite in suites:
        reason = _skip_reason(suite, ctx.device, explicit, launch, rank0)
        if reason == "not rank 0":
            continue
        if reason is not None:
            results.append(SuiteResult(suite.name, "skipped", note=reason))
            continue
        together = suite.distributed and launch is not None  # rank 0 decides time inside the suite
        if not together:
            _end_process_group()  # torchrun: the other ranks have left
        if ctx.out_of_time() and not together:
            results.append(SuiteResult(suite.name, "stopped", note="time budget (--max-seconds) spent before it began"))
            continue
        if suite.distributed and launch is None:
            spawn_later.append(suite)  # after the local suites
            continue
        results.append(_run_one(ctx, suite, args, display, launch, rank0))
    _end_process_group()
    if spawn_later:
        results += _spawn_group(ctx, spawn_later, args, display)
    order = {s.name: i for i, s in enumerate(suites)}
    return sorted(results, key=lambda r: order[r.name])


def _watch(ctx, suite: Suite, display: Display, rank0: bool):
    """Progress bar + notes capture for one suite; returns (notes, finish, rows_before)."""
    notes: list[str] = []
    base_log = display.log

    def log(msg: str) -> None:
        if re.search(r"skipped|unavailable|budget", msg):
            notes.append(msg.strip())
        base_log(msg)

    ctx.log = log
    rows0 = sum(table_rows(ctx.out_dir, suite.tables).values())
    finish = display.track(suite.name, suite_eta(suite, ctx.quick, ctx.device.startswith("cuda")) if rank0 else None,
                           lambda: sum(table_rows(ctx.out_dir, suite.tables).values()))
    return notes, finish, rows0


def suite_eta(suite: Suite, quick: bool, cuda: bool) -> float | None:
    """Expected seconds of a suite: on a GPU the device plan's estimate (``calibration.bench.plan``:
    sized from its grid, or the shipped H200 run's record), the registry's for the distributed
    suites; ``eta_quick_s`` for quick grids on CPU; None for full grids on CPU (no estimate)."""
    if not cuda:
        return suite.eta_quick_s if quick else None
    if suite.distributed:
        return suite.eta_quick_s if quick else suite.eta_s
    from calibration.bench.plan import plan_suites

    return plan_suites([suite.name], quick)[0]["seconds"]


def _run_one(ctx, suite: Suite, args, display: Display, launch, rank0: bool) -> SuiteResult:
    notes, finish, rows0 = _watch(ctx, suite, display, rank0)
    s0 = time.monotonic()
    status, note = "ok", ""
    try:
        kwargs = dict(suite.kwargs)
        if suite.name == "gemm":
            kwargs["dtypes"] = tuple(d for d in args.gemm_dtypes.split(",") if d)
        if suite.distributed:
            _torchrun_suite(ctx, suite, launch)
            note = f"{launch.world} ranks (torchrun)"
        else:
            suite.load()(ctx, **kwargs)
    except SuiteSkipped as exc:
        status, note = "skipped", str(exc)
    except Exception as exc:  # a suite's failure must not lose the others' rows
        status, note = "failed", _one_line(exc)
    if status == "ok" and ctx.out_of_time():
        status, note = "stopped", "time budget (--max-seconds) reached"
    finish(status)
    rows = sum(table_rows(ctx.out_dir, suite.tables).values())
    return SuiteResult(suite.name, status, time.monotonic() - s0, rows - rows0, rows, note, notes)


def _run_check(out: Path, device: str, args, t0: float) -> SuiteResult:
    from calibration.groundtruth.run import run_check

    s0, rows0 = time.monotonic(), sum(table_rows(out / "check").values())
    try:
        run_check(out / "check", device, args.quick,
                  float("inf") if args.max_seconds is None else t0 + args.max_seconds)
    except Exception as exc:
        return SuiteResult("check", "failed", time.monotonic() - s0, note=_one_line(exc))
    rows = sum(table_rows(out / "check").values())
    return SuiteResult("check", "ok", time.monotonic() - s0, rows - rows0, rows, "whole-model steps in check/")


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its type and its message's last line (a spawned rank's traceback
    ends with the error)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1][:200] if lines else ''}".rstrip(": ")


def _torchrun_suite(ctx, suite: Suite, launch) -> None:
    """One distributed suite on every rank of the torchrun job (env rendezvous)."""
    import torch.distributed as dist

    from calibration.bench import dist as bdist

    if not dist.is_initialized():
        bdist.disable_multicast()
        dist.init_process_group("nccl" if ctx.device.startswith("cuda") else "gloo")
    bdist.run_ranks(ctx, [(suite.name, suite.load())], ctx.device, launch.local_world)


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _spawn_group(ctx, suites: list[Suite], args, display: Display) -> list[SuiteResult]:
    """Distributed suites without torchrun: one spawned process per GPU (or gloo CPU ranks)."""
    from calibration.bench import dist as bdist

    if ctx.device.startswith("cuda"):
        import torch

        world = torch.cuda.device_count()
    else:
        world = max(2, args.cpu_ranks)
    out = []
    for suite in suites:  # one spawn per suite: its own progress bar and its own failure
        notes, finish, rows0 = _watch(ctx, suite, display, True)
        s0 = time.monotonic()
        status, note = "ok", ""
        try:
            bdist.spawn(ctx, [suite.name], world)
        except Exception as exc:
            status, note = "failed", _one_line(exc)
        if status == "ok" and ctx.out_of_time():
            status, note = "stopped", "time budget (--max-seconds) reached"
        finish(status)
        rows = sum(table_rows(ctx.out_dir, suite.tables).values())
        out.append(SuiteResult(suite.name, status, time.monotonic() - s0, rows - rows0, rows,
                               note or f"{world} ranks ({'NCCL' if ctx.device.startswith('cuda') else 'gloo'})", notes))
    return out


if __name__ == "__main__":
    sys.exit(main())
