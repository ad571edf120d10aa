"""``calibration.table.Table`` (the pandas-free reader of profile CSVs) gives what pandas gives:
every column of every shipped profile table with the same dtype and the same bits, and the
operations the lookups use (min_by, groupby, sorted_by, where, min/max) the same rows in the same
order. The cost model's path imports no pandas (a fresh interpreter costs steps and checks)."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibration.table import Table, as_table

PROFILE_TABLES = sorted(Path(str(resources.files("calibration") / "profiles")).glob("*/*.csv"))
REPO = Path(__file__).resolve().parents[1]


def assert_same_column(ours: np.ndarray, theirs: pd.Series, where: str) -> None:
    ref = theirs.to_numpy()
    if ref.dtype.kind in "iufb":
        assert ours.dtype == ref.dtype, where
        assert ours.tobytes() == ref.tobytes(), where  # bit-identical, NaN included
    else:
        assert ours.dtype == object, where
        assert len(ours) == len(ref), where
        for a, b in zip(ours, ref):
            assert (isinstance(a, float) and np.isnan(a) and pd.isna(b)) or (type(a) is str and a == b), where


def assert_same_table(ours: Table, theirs: pd.DataFrame, where: str) -> None:
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs), where
    for c in theirs.columns:
        assert_same_column(ours[c], theirs[c], f"{where}:{c}")


def test_every_shipped_table_parses_as_pandas_does():
    assert len(PROFILE_TABLES) >= 20
    for f in PROFILE_TABLES:
        assert_same_table(Table.read_csv(f), pd.read_csv(f), f.name)


def test_edge_cases_parse_as_pandas_does(tmp_path):
    """Missing fields (int -> float, NaN in strings), pandas' NA markers, bools, quoted fields,
    blank lines, short rows, repeated names, float spellings, an all-missing column."""
    text = ('a,b,c,d,e,f,b,g,h\n'
            '1,2.5,x,True,NA,"7",1e3,,-0\n'
            '\n'
            '2,,"y,z",false,,8,.5,,+3\n'
            '3,-inf,nan,TRUE,,9,1.25E-7\n'
            '4,7,N/A,False,,10,-2.5e+06,,12\n')
    p = tmp_path / "t.csv"
    p.write_text(text)
    assert_same_table(Table.read_csv(p), pd.read_csv(p), "edge")
    rng = np.random.default_rng(0)
    vals = np.exp(rng.uniform(-30, 30, 5000)) * rng.choice([-1, 1], 5000)
    for fmt in ("{!r}", "{:.6g}", "{:.17g}", "{:.3e}", "{:.12f}"):
        p.write_text("v\n" + "\n".join(fmt.format(float(v)) for v in vals) + "\n")
        assert_same_table(Table.read_csv(p), pd.read_csv(p), fmt)
    # a quoted field holding the separator the column check joins fields with, or a comma
    p.write_text('n,x,y\n1,"2\n3",1.5\n4,5,2.5\n6,"7,8",inf\n')
    assert_same_table(Table.read_csv(p), pd.read_csv(p), "newline")
    p.write_text("a,b\n")
    assert Table.read_csv(p).empty and list(Table.read_csv(p).columns) == ["a", "b"]


def _with_missing() -> tuple[Table, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"k1": rng.integers(0, 4, n), "k2": rng.choice([1.0, 2.0, np.nan], n),
                       "s": pd.Series(rng.choice(["b", "a", "c"], n), dtype=object).where(rng.random(n) > 0.1),
                       "seconds": np.where(rng.random(n) > 0.2, rng.random(n), np.nan)})
    return as_table(df), df


@pytest.mark.parametrize("keys", [["k1"], ["k1", "k2"], ["s", "k1"], "k2"])
def test_groupby_and_min_by_follow_pandas(keys):
    """Sorted keys, table order inside a group, rows with a missing key dropped, NaN skipped by min."""
    t, df = _with_missing()
    ours = list(t.groupby(keys))
    theirs = list(df.groupby(keys))
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert_same_table(a, b.reset_index(drop=True), f"group {keys}")
    assert_same_table(t.min_by(keys, "seconds"), df.groupby(keys, as_index=False)["seconds"].min(), "min_by")


def test_shipped_tables_group_sort_and_filter_as_pandas_does():
    """The key sets the lookups group by, on the tables they read."""
    for f in PROFILE_TABLES:
        t, df = Table.read_csv(f), pd.read_csv(f)
        ints = [c for c in df.columns if df[c].dtype.kind == "i"]
        value = "seconds" if "seconds" in df.columns else "gap_s"  # in_step_gap.csv: seconds per op as gap_s
        for keys in ([ints[0]], ints[:2], ints[:4], ints[:5]) if ints else ():
            assert_same_table(t.min_by(keys, value), df.groupby(keys, as_index=False)[value].min(), f.name)
            assert [k for k, _ in t.groupby(keys)] == [k for k, _ in df.groupby(keys)], f.name
            assert_same_table(t.sorted_by(*keys[::-1]), df.sort_values(keys[::-1], kind="stable")
                              .reset_index(drop=True), f.name)
        if "seconds" in df:
            assert t.min("seconds") == df.seconds.min() and t.max("seconds") == df.seconds.max()
            mask = df.seconds.to_numpy() > df.seconds.median()
            assert_same_table(t.where(mask), df[mask].reset_index(drop=True), f.name)
        for c in df.columns:
            if df[c].dtype == object or str(df[c].dtype) == "str":
                assert [k for k, _ in t.groupby(c)] == [k for k, _ in df.groupby(c)], f.name


def test_to_pandas_round_trips():
    f = PROFILE_TABLES[0]
    assert_same_table(as_table(Table.read_csv(f).to_pandas()), pd.read_csv(f), f.name)


NO_PANDAS = """
import sys
from calibration.resolve import resolve_profile
from hardware.catalog import get_cluster
from simulator.instance import InstanceCost, InstanceSpec
from workloads.layout import Layout
from workloads.models import get_model
from workloads.ops import BatchShape

for model, cluster, lay, kw in (("llama-3.1-70b", "h200-node", Layout(tp=4), {}),
                                ("deepseek-v3", "h800-mpft", Layout(dp=8, ep=8), {"weight_dtype": "fp8", "mtp_depth": 1}),
                                ("deepseek-v3", "h200-node", Layout(dp=8, ep=8), {"kernels": "eager"})):
    cl = get_cluster(cluster)
    prof = resolve_profile("default", cl.device.name)
    ic = InstanceCost(InstanceSpec(model=get_model(model), cluster=cl, layout=lay, **kw), prof)
    for b in (BatchShape.prefill(2, 3000), BatchShape.decode(64, 2500), BatchShape.decode(7, 33000, new_tokens=2)):
        assert ic.step(b).seconds > 0
    prof.efficiency_fit()
assert "pandas" not in sys.modules, "the cost model's path imported pandas"
print("ok")
"""


def test_cost_model_path_imports_no_pandas():
    """H200 (measured) and H800 (transferred) profiles, Llama-70B TP4 and DeepSeek-V3 (fused and
    eager kernels): every lookup the engine's steps reach, without pandas."""
    r = subprocess.run([sys.executable, "-c", NO_PANDAS], cwd=REPO, capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
