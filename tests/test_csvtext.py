"""``clustersim.csvtext`` writes the bytes of ``DataFrame.to_csv(index=False)``: floats of every
magnitude and kind (Arrow's shortest digits where its layout is Python's, ``repr`` elsewhere),
integers, strings, NaN; tables it cannot format exactly fall back to pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clustersim.csvtext import frame_chunks, rows_text
from clustersim.outputs import write_table_csv

SPECIAL = [0.0, -0.0, 1.0, -3.0, 2.5, 1e15, 1e16, 9999999999999998.0, 123456789.0, 1e-4, 1e-5, 1.234e-5, 2.5e-7,
           0.00012, 1e9, 999999999.5, 1e9 + 0.5, 1e22, np.inf, -np.inf, np.nan, 5e-324, 1.7976931348623157e308,
           0.1, 1 / 3, 3e10, 1.2345678901234567e19, 100.0, 0.5, -1e-300, 0.30000000000000004]


def _draws(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mags = 10.0 ** rng.integers(-8, 12, n)
    dyadic = rng.integers(1, 2 ** 20, n) / 2.0 ** rng.integers(0, 40, n)  # exactly representable: tie candidates
    bits = rng.integers(0, 2 ** 63, n, dtype=np.int64).view(np.float64)  # any double, NaNs included
    return np.concatenate([rng.random(n) * mags, -rng.random(n) * mags, dyadic, bits, np.array(SPECIAL),
                           np.nextafter(np.array([1e-4, 1e9, 1.0, 1e15]), 0), np.nextafter(np.array([1e-4, 1e9]), 2e9)])


@pytest.mark.parametrize("seed", [0, 1])
def test_float_cells_are_repr(seed):
    a = _draws(200_000, seed)
    text = bytes(rows_text([a, np.arange(a.size)])).decode().splitlines()
    want = ["" if v != v else repr(v) for v in a.tolist()]
    assert [ln.rsplit(",", 1)[0] for ln in text] == want


def test_frames_match_pandas(tmp_path):
    rng = np.random.default_rng(3)
    n = 50_000
    df = pd.DataFrame({
        "time_s": np.cumsum(rng.random(n)), "instance": rng.integers(0, 9, n),
        "pool": pd.array(np.array(["prefill", "decode", "p/d x"])[rng.integers(0, 3, n)], dtype="str"),
        "tpot_s": np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 1e-3),
        "zeros": np.zeros(n), "big": rng.integers(-2 ** 62, 2 ** 62, n), "u8": rng.integers(0, 255, n).astype(np.uint8),
        "i32": rng.integers(-5, 5, n).astype(np.int32), "mixed": _draws(n // 4, 5)[:n],
    })
    df.loc[3, "pool"] = None
    want = df.to_csv(index=False).encode()
    assert b"".join(frame_chunks(df, rows=7_000)) == want
    write_table_csv(df, tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_bytes() == want
    assert b"".join(frame_chunks(df.iloc[:0])) == df.iloc[:0].to_csv(index=False).encode()


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"a": [1.0, 2.0], "b": ['x,"y"', "z"]}),  # needs quoting
    pd.DataFrame({"a": [1.0, 2.0], "b": [True, False]}),  # bool
    pd.DataFrame({"a": np.float32([1.1, 2.2]), "b": [1, 2]}),  # float32
    pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [1, 2]}),  # nullable
    pd.DataFrame({"only": [1.5, np.nan]}),  # one column (an empty field is quoted)
])
def test_other_tables_fall_back_to_pandas(frame, tmp_path):
    write_table_csv(frame, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_bytes() == frame.to_csv(index=False).encode()


def test_quoting_found_past_the_first_chunk(tmp_path):
    df = pd.DataFrame({"a": np.arange(10.5, 30.5), "b": ["ok"] * 19 + ["a,b"]})
    write_table_csv(df, tmp_path / "q.csv")
    assert (tmp_path / "q.csv").read_bytes() == df.to_csv(index=False).encode()


def test_simulate_outputs_are_pandas_bytes(tmp_path):
    """``write_simulation`` streams timeseries.csv from the run's step table and requests.csv
    through Arrow: the bytes pandas writes of ``SimResult.steps`` / ``.requests``."""
    from clustersim.outputs import OutputDir, write_simulation
    from simulator import simulate
    from workloads.deployment import load_deployment

    dep = load_deployment("examples/deepseek-v3_h800_pd-disagg.yaml", ["workload.num_requests=60"])
    res = simulate(dep)
    out = OutputDir.prepare(tmp_path / "o")
    write_simulation(out, "serving", res, res.summary)
    assert (tmp_path / "o" / "timeseries.csv").read_bytes() == res.steps.to_csv(index=False).encode()
    assert (tmp_path / "o" / "requests.csv").read_bytes() == res.requests.to_csv(index=False).encode()
    assert res.steps["pool"].nunique() == 2 and len(res.steps) == res.summary["engine"]["iterations"]
