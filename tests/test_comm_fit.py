"""The communication fit, fit and hold-out apart (hardware.comm_fit).

Rows: clustersim/data/reference/comm_nccl.yaml (nccl-tests tables on NVLink, vendor slides),
comm_deepep.yaml and comm_cm384.yaml, each marked ``fit`` or ``holdout``. The fitted parameters
of hardware/data/comm_calibration.yaml must be what the fit rows alone give
(``hardware.comm_fit.fit_parameters``). Every row is judged at its tolerance by the one registry
of reference checks (families ``comm.nccl``, ``comm.deepep``, ``comm.cm384``;
tests/test_reference_checks.py, ``clustersim check``), a row the model misses carrying the
mechanism it lacks as a strict known gap; here: that the registry judges exactly these rows with
their roles, and that ``clustersim check`` reports fit and hold-out apart.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from clustersim import checks
from clustersim.cli import app
from hardware.collectives import collective_time, load_comm_calibration
from hardware.catalog import get_cluster
from hardware.comm_fit import FITS, evaluate, fit_parameters, load_points

POINTS = load_points(checks.reference_dir())
CAL = load_comm_calibration()


@pytest.fixture(scope="module")
def fitted():
    return fit_parameters(POINTS)


def test_stored_parameters_are_the_fit_of_the_fit_rows(fitted):
    for name, value in fitted.items():
        assert CAL.get(name) == pytest.approx(value, rel=2e-4), name


def test_fit_never_sees_a_holdout_row(fitted):
    # moving every hold-out row leaves the fit unchanged
    moved = [replace(p, value=p.value * 1.7) if p.role == "holdout" else p for p in POINTS]
    again = fit_parameters(moved)
    for name, value in fitted.items():
        assert again[name] == pytest.approx(value, rel=1e-9), name


def test_every_fit_has_fit_and_holdout_rows():
    for fit in FITS:
        roles = {p.role for p in POINTS if fit.select(p)}
        assert roles == {"fit", "holdout"}, fit.params
    assert {p.role for p in POINTS} == {"fit", "holdout"}


@pytest.mark.parametrize("family,fams", [("comm.nccl", {"nccl"}), ("comm.deepep", {"deepep_normal", "deepep_ll", "deepep_ll_h20",
                                                                                 "deepep_ll_bw"}),
                                          ("comm.cm384", {"cm384", "cm384_bw"})])
def test_registry_judges_every_row_with_its_role_tolerance_and_gap(family, fams):
    rows = {p.label: p for p in POINTS if p.family in fams}
    cs = {c.id: c for c in checks.FAMILIES[family]()}
    assert set(cs) == set(rows) and len(cs) == len([p for p in POINTS if p.family in fams])
    for label, p in rows.items():
        c = cs[label]
        assert (c.role, c.tolerance.rel, c.known_gap, c.published) == (p.role, p.rel_tol, p.known_deviation, p.value)
    assert {c.role for c in cs.values()} == {"fit", "holdout"}


def test_nccl_rows_are_85_with_both_roles_and_named_gaps():
    cs = checks.FAMILIES["comm.nccl"]()
    assert len(cs) == 85 and sum(c.role == "fit" for c in cs) == 18
    gaps = [c for c in cs if c.known_gap]
    assert gaps and all(c.role == "holdout" and c.status == "known gap" for c in gaps)
    assert all(c.extra["protocol"] in ("ll", "ll128", "simple") for c in cs)


def test_check_command_reports_fit_and_holdout_apart():
    res = CliRunner().invoke(app, ["check", "--only", "comm.nccl", "--only", "comm.deepep", "--only", "comm.cm384"])
    assert res.exit_code == 0, res.output
    block = res.output.split("== communication (published), per family and split")[1].split("\n\n")[0]
    for family in ("comm.nccl", "comm.deepep", "comm.cm384"):
        assert f"{family:28s} fit " in block and f"{family:28s} holdout " in block, block
    assert "mle.h200.all_reduce.8/h200-node/all_reduce/auto/p8/16MiB" in res.output and "0 fail" in res.output


def test_holdout_accuracy_in_the_16mib_1gib_regime_on_hopper_nvlink():
    # the regime: collectives of 16 MiB - 1 GiB inside an H100/H200/H800 NVLink domain
    rows = [r for r, p in zip(evaluate(POINTS, CAL), POINTS)
            if p.family == "nccl" and p.role == "holdout" and 16 <= p.args["size_MiB"] <= 1024
            and get_cluster(p.args["cluster"]).device.name in ("h100-sxm", "h200-sxm", "h800-sxm")]
    err = np.abs([r["error"] for r in rows])
    print(f"{len(rows)} hold-out rows: median {np.median(err):.1%}, max {err.max():.1%}")
    assert len(rows) >= 8 and np.median(err) <= 0.05 and err.max() <= 0.12


def test_medium_collectives_are_slower_than_the_bandwidth_bound():
    # the mechanism behind 'collectives below 1 GiB predicted too fast': at 16 MiB the protocol
    # latencies are a large share; at 8 GiB the link bandwidth is all that is left
    h200 = get_cluster("h200-node")
    for p in (2, 4, 8):
        for op in ("all_reduce", "all_gather", "all_to_all"):
            mid = collective_time(op, 16 * 2**20, p, h200)
            big = collective_time(op, 8 * 2**30, p, h200)
            assert mid.bus_bytes_per_s < 0.9 * big.bus_bytes_per_s, (op, p)
            assert dict(mid.breakdown)["latency"] > 5e-6 if "latency" in dict(mid.breakdown) else True
