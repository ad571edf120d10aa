"""Calibration: torch microbenchmarks (optional, ``calibration.bench``) and profiles (no torch).

``calibration.protocol.Profile`` is what the cost model may ask of a profile (a Protocol);
``calibration.profile`` loads measured per-op tables (``MeasuredProfile``; shipped ones live
under ``calibration/profiles/<name>/``) and answers per-op time lookups; it never imports torch.
``calibration.resolve`` is the one place that decides which profile a command uses.
``calibration.run`` (``python -m calibration.run``) measures a new profile on a GPU;
``calibration.groundtruth`` measures whole-model steps kept apart from the profile.
Names below are resolved lazily so ``import calibration`` stays cheap.
"""

__all__ = ["Profile", "MeasuredProfile", "LayeredProfile", "load_profile", "profile_info", "resolve_profile"]
_HOME = {"Profile": "protocol", "MeasuredProfile": "profile", "LayeredProfile": "resolve", "load_profile": "profile",
         "profile_info": "resolve", "resolve_profile": "resolve"}


def __getattr__(name: str):
    if name in _HOME:
        from importlib import import_module

        return getattr(import_module(f"calibration.{_HOME[name]}"), name)
    raise AttributeError(f"module 'calibration' has no attribute {name!r}")
