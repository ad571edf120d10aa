"""workloads.scipy_parts: scipy's compiled pieces loaded alone give scipy's own bits, and a plan's
process never imports scipy's packages (their array-API layer was ~0.2 s of its serial start)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def _run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_pieces_load_alone_and_are_the_packages_own_objects():
    """In a fresh interpreter: the ufuncs, the solver and the triangulation load without
    ``scipy.special``, ``scipy.linalg``, ``scipy.spatial`` or the array-API layer; the packages
    imported afterwards hand out the very same ufunc and extension-module objects."""
    _run(
        "import numpy as np\n"
        "from workloads import scipy_parts as sp\n"
        "from calibration.interp import _delaunay_class, single_threaded_scipy_blas\n"
        "u = sp.special_ufuncs(); d = _delaunay_class(); single_threaded_scipy_blas()\n"
        "x = sp.solve(np.array([[2., 1.], [1., 3.]]), np.array([1., 2.]))\n"
        "heavy = [m for m in ('scipy.special', 'scipy.linalg', 'scipy.spatial', 'scipy._lib._array_api') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import scipy.special, scipy.linalg, scipy.spatial\n"
        "assert scipy.special.gammaln is u.gammaln and scipy.special.xlogy is u.xlogy\n"
        "assert scipy.special.pdtr is u.pdtr\n"
        "assert scipy.special._ufuncs is u and d is scipy.spatial.Delaunay\n"
        "assert np.array_equal(x, scipy.linalg.solve(np.array([[2., 1.], [1., 3.]]), np.array([1., 2.])))\n"
    )


def test_fallback_when_nothing_loads_alone():
    """Where a module cannot be loaded alone, the package is imported as usual (same answers)."""
    _run(
        "import numpy as np\n"
        "import workloads.scipy_parts as sp\n"
        "sp.extension_alone = lambda name: None\n"
        "u = sp.special_ufuncs()\n"
        "assert 'scipy.special' in sys.modules and u is sys.modules['scipy.special._ufuncs']\n"
        "assert sp._batched_solve() is None\n"
        "a = np.array([[4., 1., 0.], [1., 3., 1.], [0., 1., 2.]]); b = np.array([1., 2., 3.])\n"
        "import scipy.linalg\n"
        "assert sp.solve(a, b).tobytes() == scipy.linalg.solve(a, b, check_finite=False).tobytes()\n"
    )


def _chains(rng, n: int, k: int):
    """Stationary-law systems as ``planner.queueing`` builds them, and structured matrices that
    take scipy's other solvers (triangular, symmetric, positive definite, diagonal)."""
    for _ in range(k):
        P = rng.random((n, n)) * (rng.random((n, n)) < 0.3) + 1e-3
        P /= P.sum(axis=1, keepdims=True)
        A = P.T - np.eye(n)
        A[-1, :] = 1.0
        b = np.zeros(n)
        b[-1] = 1.0
        yield A, b
        T = np.triu(rng.random((n, n))) + np.eye(n)
        yield T, rng.random(n)
        yield T.T.copy(), rng.random(n)
        yield T + T.T, rng.random(n)
        yield T @ T.T, rng.random(n)
        yield np.diag(rng.random(n) + 0.5), rng.random(n)


@pytest.mark.parametrize("n", [2, 3, 7, 16, 41, 80])
def test_solve_is_scipys_bits(n):
    import scipy
    from scipy.linalg import solve as scipy_solve

    from workloads import scipy_parts
    from workloads.scipy_parts import solve

    if ".".join(scipy.__version__.split(".")[:2]) in scipy_parts._SOLVE_RELEASES:
        assert scipy_parts._batched_solve() is not None  # the compiled routine is what is compared here
    rng = np.random.default_rng(n)
    for A, b in _chains(rng, n, 20):
        assert solve(A, b).tobytes() == scipy_solve(A, b, check_finite=False).tobytes()
    # a column of a larger array (not contiguous) and a Fortran-ordered matrix
    A, b = next(_chains(rng, n, 1))
    bb = np.stack([b, b], axis=1)[:, 0]
    assert solve(np.asfortranarray(A), bb).tobytes() == scipy_solve(np.asfortranarray(A), bb,
                                                                     check_finite=False).tobytes()


def test_singular_and_ill_conditioned_go_through_scipy():
    from scipy.linalg import LinAlgWarning

    from workloads.scipy_parts import solve

    with pytest.raises(np.linalg.LinAlgError):
        solve(np.zeros((3, 3)), np.ones(3))
    ill = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-17 + 2e-16]])
    with pytest.warns(LinAlgWarning):
        solve(ill, np.array([1.0, 2.0]))


def test_ufuncs_are_scipy_specials():
    import scipy.special

    from workloads.moe_routing import binom_cdf, poisson_pmf
    from workloads.scipy_parts import special_ufuncs

    u = special_ufuncs()
    assert u.gammaln is scipy.special.gammaln and u.pdtr is scipy.special.pdtr
    k = np.arange(0, 60)
    assert poisson_pmf(k, 7.5).tobytes() == np.clip(np.exp(scipy.special.xlogy(k, 7.5) - scipy.special.gammaln(k + 1)
                                                           - 7.5), 0, 1).tobytes()
    assert binom_cdf(np.array([0.0, 3.0, 10.0]), 10, 0.3)[2] == 1.0
