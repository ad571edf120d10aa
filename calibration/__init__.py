"""Calibration: torch microbenchmarks (optional, ``calibration.bench``) and profiles (no torch).

``calibration.profile`` loads measured per-op tables (shipped ones live under
``calibration/profiles/<name>/``) and answers per-op time lookups; it never imports torch.
``calibration.run`` (``python -m calibration.run``) measures a new profile on a GPU;
``calibration.groundtruth`` measures whole-model steps kept apart from the profile.
Names below are resolved lazily so ``import calibration`` stays cheap.
"""

__all__ = ["Profile", "default_profile_for", "load_profile"]


def __getattr__(name: str):
    if name in __all__:
        from calibration import profile

        return getattr(profile, name)
    raise AttributeError(f"module 'calibration' has no attribute {name!r}")
