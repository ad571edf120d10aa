"""``simulator.draws.AcceptanceDraws`` hands out exactly the numbers the generator gives when it is
called once per step: across chunk boundaries, for requests longer than a chunk, and with
uniforms and increments of different acceptances and dtypes interleaved."""

from __future__ import annotations

import numpy as np

from simulator import draws as draws_mod
from simulator.draws import AcceptanceDraws


def test_chunked_draws_equal_direct_calls(monkeypatch):
    monkeypatch.setattr(draws_mod, "CHUNK", 1000)  # many chunk boundaries
    ref, ours = np.random.default_rng(7), AcceptanceDraws(np.random.default_rng(7))
    sizes = np.random.default_rng(1).integers(0, 700, 400).tolist() + [2500, 3, 1000, 999, 1]
    for i, n in enumerate(sizes):
        want = ref.random(n)
        if i % 3 == 0:
            assert np.array_equal(ours.uniforms(n), want)
        else:
            a, dtype = (0.85, np.int32) if i % 3 == 1 else (0.5, np.int64)
            got = ours.increments(n, a, dtype)
            assert got.dtype == dtype
            assert np.array_equal(got, 1 + (want < a).astype(dtype))


def test_depth_two_rows_read_in_order():
    ref, ours = np.random.default_rng(3), AcceptanceDraws(np.random.default_rng(3))
    for n in (5, 2000, 70000):
        assert np.array_equal(ours.uniforms(n * 2).reshape(n, 2), ref.random((n, 2)))
