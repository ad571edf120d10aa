"""Every reference check of the registry (``clustersim.checks``) at its stated tolerance.

The published figures (``clustersim/data/reference``) and our ground truth
(``clustersim/data/measured``) are predicted ONLY by the registry's family functions, which
``clustersim check`` runs too: a check may be ok or a known gap (the data names the missing
mechanism), never a failure. A known gap must still be real (strict, like ``xfail(strict)``):
when the model closes it, the data's ``known_gap`` entry has to go.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

from clustersim import checks
from clustersim.checks.core import Tolerance
from clustersim.checks.systems import Unavailable

#: the families whose checks are published figures (the measured ground truth: test below)
#: families of published figures (our own measurements: ``measured`` and the measured kernel tables)
PUBLISHED = [f for f in checks.FAMILIES if f != "measured" and f not in checks._MEASURED_TABLES]


@lru_cache(maxsize=None)
def _family(name: str) -> tuple:
    return tuple(checks.FAMILIES[name]())


def family(name: str) -> tuple:
    """The family's checks; skipped while its data is not shipped (a measured kernel table awaiting
    its device run says so: ``Unavailable``)."""
    try:
        return _family(name)
    except Unavailable as exc:
        pytest.skip(f"{name}: {exc}")


def _lines(cs) -> str:
    return "\n".join(f"{c.id}: predicted {c.predicted} vs {c.published} {c.unit} ({c.tolerance.text()})" for c in cs)


@pytest.mark.parametrize("name", list(checks.FAMILIES))
def test_no_check_fails(name):
    cs = family(name)
    assert cs, f"{name}: no checks"
    for c in cs:  # print the errors with pytest -s
        err = "-" if c.error is None else f"{c.error:+.1%}"
        print(f"{c.status:9s} {c.id}: {c.predicted} vs {c.published} {c.unit} ({err})")
    failed = [c for c in cs if c.status == "fail"]
    assert not failed, _lines(failed)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_known_gaps_are_still_missed(name):
    closed = [c for c in family(name) if c.known_gap and c.within]
    assert not closed, "the model now meets these; remove their known_gap from the data:\n" + _lines(closed)


@pytest.mark.parametrize("name", checks._MEASURED_TABLES)
def test_measured_table_known_gaps_are_still_missed(name):
    """A kernel table's known gap names a mechanism over a range of rows: some row of it must still
    be outside the tolerance (else the mechanism is modelled now and the gap must go)."""
    by_gap = {}
    for c in family(name):
        if c.known_gap:
            by_gap.setdefault(c.known_gap, []).append(c)
    for mechanism, cs in by_gap.items():
        assert any(not c.within for c in cs), f"{name}: every row of this gap is now within tolerance: {mechanism}"


def test_measured_known_gaps_are_still_missed():
    targets = checks.measured.accuracy_targets()
    cs = family("measured")
    for fam in targets.get("known_gaps") or {}:
        points = [c for c in cs if c.family == f"measured.{fam}"]
        assert points, f"accuracy_targets.yaml names family {fam!r}, which has no ground-truth points"
        assert any(not c.within for c in points), f"measured.{fam}: every point is now within the tolerance"


def test_every_reference_file_is_checked():
    files = {p.name for p in checks.reference_dir().glob("*.yaml")}
    assert files and set(checks.FILES) == set(checks.FAMILIES)
    assert files == {f for f in checks.FILES.values() if "/" not in f}, "a reference file without a check family"
    assert all((checks.reference_dir() / f).is_file() for f in checks.FILES.values())


def test_every_published_row_appears():
    """Row counts of the files equal the checks made of them (nothing silently skipped)."""
    ref = checks.load_reference
    assert len(family("accounting")) == len(ref("isca_accounting.yaml")["targets"])
    nccl = ref("comm_nccl.yaml")
    assert len(family("comm.nccl")) == sum(len(s["points"]) for s in nccl["series"])
    deepep = ref("comm_deepep.yaml")
    assert len(family("comm.deepep")) == sum(len(deepep[k]["rows"]) for k in ("normal", "low_latency", "low_latency_h20",
                                                                             "low_latency_bandwidth"))
    cm = ref("comm_cm384.yaml")
    assert len(family("comm.cm384")) == len(cm["rows"]) + len(cm["bandwidth"]["rows"])
    assert len(family("comm.isca_decode_limit")) == len(ref("comm_isca_decode_limit.yaml")["targets"])
    assert len(family("serving.estimate")) == len(ref("serving_throughput.yaml")["targets"])
    assert len(family("planner.cm384_trend")) == 2 * len(ref("cm384_decode_trend.yaml")["points"])
    assert all(c.predicted is not None for c in family("comm.nccl") + family("comm.deepep") + family("topology"))


def test_cm384_fused_kernels_are_costed_by_the_ub_model():
    assert all(c.extra["cost_source"].startswith("model:ub_fused") for c in family("comm.cm384"))


def test_engine_decode_meets_the_tpot_limit():
    (c,) = family("serving.engine")
    assert c.extra["tpot_ms"] <= c.extra["tpot_ms_max"] * 1.05


def test_cm384_trend_looser_tpot_never_lowers_throughput():
    for profile in ("default", "null"):
        got = {c.id: c.predicted for c in family("planner.cm384_trend") if c.id.endswith(f"profile={profile}")}
        vals = [got[f"cm384.decode.tps_{t}ms@profile={profile}"] for t in (50, 30, 15)]
        finite = [v for v in vals if v is not None]
        assert finite == sorted(finite, reverse=True), (profile, vals)


def test_topology_validation_rows_do_not_drift():
    """SF and DF miss the paper by what hardware/README.md reports; pinned so a change is noticed."""
    err = {c.id: c.error for c in family("topology")}
    pinned = {"isca.topo.mpft": (0.0000, 0.0010), "isca.topo.sf": (0.0050, 0.0128), "isca.topo.df": (0.0190, 0.0220)}
    for tid, (total, per_endpoint) in pinned.items():
        assert err[f"{tid}.cost_musd"] == pytest.approx(total, abs=5e-4)
        assert err[f"{tid}.cost_per_endpoint_kusd"] == pytest.approx(per_endpoint, abs=5e-4)


def test_status_rules():
    def mk(pred, **kw):
        return checks.Check("f", "x", "s", "", "q", "u", 100.0, pred, Tolerance(rel=0.1), **kw)

    assert mk(109.0).status == "ok" and mk(111.0).status == "fail" and mk(None).status == "fail"
    assert mk(130.0, known_gap="m").status == "known gap"
    assert mk(130.0, known_gap="m", gap_bound=Tolerance(rel=0.25)).status == "fail"
    assert Tolerance(band=(-0.5, 0.1)).within(60.0, 100.0) and not Tolerance(band=(-0.5, 0.1)).within(120.0, 100.0)
    assert Tolerance.parse({"abs": 1e9}, scale=1e9).within(672.0, 671.0)
    assert Tolerance(exact=True).within(0.1 + 0.2, 0.3) and not Tolerance(exact=True).within(0.31, 0.3)


def test_run_checks_rejects_unknown_family():
    with pytest.raises(ValueError, match="unknown check family .*valid: accounting"):
        checks.run_checks(["nope"])
