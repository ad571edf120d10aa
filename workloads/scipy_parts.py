"""The few compiled scipy pieces the cost models and the planner call, loaded without scipy's packages.

``import scipy.linalg`` or ``import scipy.special`` runs the package's ``__init__``, which imports
scipy's array-API layer (``scipy._lib._array_api``: its numpy namespace clones every attribute of
numpy, importing ``numpy.f2py``, ``numpy.char``, ``numpy.ma``, ...) and every submodule of the
package: ~0.2-0.3 s of CPU on this project's 2-core machine, bytecode cached, of which a plan's
serial start (before its workers fork) paid all. The functions used here are compiled ufuncs
and LAPACK drivers that need none of it; loaded from their extension modules alone they cost
~25 ms:

* ``special_ufuncs()``: ``scipy.special._ufuncs`` (``gammaln``, ``xlogy``, ``pdtr``,
  ``_binom_cdf``: the very objects ``scipy.special`` exports, so the same bits);
* ``solve(a, b)``: ``scipy.linalg.solve(a, b, check_finite=False)`` for a float64 square matrix
  and vector, through the same compiled routine with the same arguments (``_batched_linalg._solve``);
  a singular or ill-conditioned matrix goes to ``scipy.linalg.solve`` itself, which raises or
  warns as it always did;
* ``extension_alone(name)``: any other such module (``scipy.spatial._qhull``, ``scipy.linalg._fblas``).

Each module is registered under its own name, so a later ``import scipy.special`` (or
``scipy.linalg``, ``scipy.spatial``) by anyone reuses it: one module object per process either way.
Where scipy's layout differs (no such file, a failed load), the package is imported as usual.
``tests/test_scipy_parts.py`` checks the bits against scipy's public functions.
"""

from __future__ import annotations

import sys
import types
from functools import lru_cache

__all__ = ["extension_alone", "special_ufuncs", "solve"]

#: compiled modules an extension imports from packages not yet imported: loaded alone first
#: (the triangulation's LAPACK calls would otherwise import all of ``scipy.linalg``)
_NEEDS = {"scipy.spatial._qhull": ("scipy.linalg.cython_lapack",)}


def extension_alone(name: str):
    """Load the extension module ``name`` (``scipy.spatial._qhull``) from its package's folder
    without running the package's ``__init__``; None where that cannot be done. A module that
    imports a pure-Python sibling (``scipy.special._ufuncs`` imports ``_sf_error``) finds it through
    a placeholder of its package, present only while it loads."""
    import importlib.machinery
    import importlib.util
    import os

    try:
        import scipy

        for need in _NEEDS.get(name, ()):
            if need not in sys.modules and extension_alone(need) is None:
                return None
        package, _, _leaf = name.rpartition(".")
        folder = os.path.join(os.path.dirname(scipy.__file__), *package.split(".")[1:])
        spec = importlib.machinery.PathFinder.find_spec(name, [folder])
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return None
        placeholder = None
        if package not in sys.modules:  # removed again below: a later import runs the real package
            placeholder = types.ModuleType(package)
            placeholder.__path__ = [folder]
            sys.modules[package] = placeholder
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        finally:
            if placeholder is not None and sys.modules.get(package) is placeholder:
                del sys.modules[package]
        return module
    except Exception:  # noqa: BLE001 - any failure: the caller imports the package as usual
        return None


@lru_cache(maxsize=1)
def special_ufuncs():
    """``scipy.special._ufuncs`` (the ufuncs ``scipy.special`` exports), loaded alone where it can be."""
    module = sys.modules.get("scipy.special._ufuncs") or extension_alone("scipy.special._ufuncs")
    if module is not None:
        return module
    import scipy.special._ufuncs as module

    return module


#: scipy releases whose ``solve`` hands ``_batched_linalg._solve`` the arguments ``solve`` below
#: passes (checked by ``tests/test_scipy_parts.py``); others go through ``scipy.linalg.solve``
_SOLVE_RELEASES = ("1.17",)


@lru_cache(maxsize=1)
def _batched_solve():
    """``scipy.linalg._batched_linalg._solve``, or None where it cannot be loaded alone (or scipy
    is a release whose ``solve`` was not checked against it)."""
    import scipy

    if ".".join(scipy.__version__.split(".")[:2]) not in _SOLVE_RELEASES:
        return None
    module = sys.modules.get("scipy.linalg._batched_linalg") or extension_alone("scipy.linalg._batched_linalg")
    return getattr(module, "_solve", None)


def solve(a, b):
    """``scipy.linalg.solve(a, b, check_finite=False)`` for a float64 square matrix ``a`` (n x n,
    n >= 2) and a float64 vector ``b``: the arguments scipy 1.17's ``solve`` hands its compiled
    routine (structure detected, nothing overwritten), so the same bits. Anything else, or any
    error or warning the routine reports, goes to ``scipy.linalg.solve`` itself."""
    import numpy as np

    fn = _batched_solve()
    a = np.asarray(a)
    b = np.asarray(b)
    n = a.shape[0] if a.ndim == 2 else 0
    if (fn is None or a.dtype != np.float64 or b.dtype != np.float64 or a.shape != (n, n) or n < 2
            or b.shape != (n,)):
        return _scipy_solve(a, b)
    x, errors = fn(np.broadcast_to(a, (n, n)), np.broadcast_to(b[:, None], (n, 1)), -1, False, False, False, False)
    if errors:
        return _scipy_solve(a, b)
    return x[..., 0]


def _scipy_solve(a, b):
    from scipy.linalg import solve as scipy_solve

    return scipy_solve(a, b, check_finite=False)
