"""YAML of the shipped catalogs and data files, parsed by libyaml when PyYAML was built with it.

The C parser is about ten times faster than the pure-Python one (the catalogs are most of a
short command's start-up) and builds the same documents (same resolver and constructor). A
document that does not parse is parsed again by the pure-Python loader, so its error reads as
it always did.
"""

from __future__ import annotations

from typing import IO, Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(stream: str | bytes | IO) -> Any:
    """``yaml.safe_load``, with libyaml's parser where available."""
    text = stream.read() if hasattr(stream, "read") else stream
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:
        return yaml.safe_load(text)
