"""The parsed hardware data as JSON: what ``hardware.catalog`` and ``hardware.collectives`` load at
start-up instead of parsing and validating the YAML again (issue 15: a short command's start-up).

The packaged YAML (``hardware/data``) stays the one source. ``catalog_snapshot.json`` beside it
holds what ``hardware.catalog_yaml.parse_catalog`` makes of the three catalog files -- the
devices, prices and clusters in SI, field by field -- and the parsed document of
``comm_calibration.yaml`` (``DOCUMENTS``), with the CRC-32 and length of every YAML file it was
made from. ``packaged()`` answers the snapshot only while every one of those files still has its
recorded checksum; otherwise (a file edited, the snapshot missing or of another format) it answers
None and the data is parsed and validated from the YAML as before. JSON keeps what the objects
hold: floats as their shortest repr (the same float back), ints as ints, mappings in their order;
a cluster's device is its catalog device by name, as the parser shares it.
``tests/test_catalog_snapshot.py`` holds the snapshot to the parse of the YAML (``repr`` of the
whole catalog and calibration, types included).

Regenerate after editing a file of ``hardware/data``::

    python -m hardware.catalog_snapshot > hardware/data/catalog_snapshot.json
"""

from __future__ import annotations

import dataclasses
import functools
import json
import zlib
from importlib import resources
from types import MappingProxyType
from typing import Any, Callable, Mapping

from hardware.topology import NetworkPrices
from hardware.types import Cluster, DeviceSpec, Tier, Topology

SNAPSHOT_FILE = "catalog_snapshot.json"
#: packaged YAML documents the snapshot holds as parsed (their readers take the document)
DOCUMENTS = ("comm_calibration.yaml",)
_FORMAT = 2


def read_data(name: str) -> str:
    """The text of the packaged data file ``hardware/data/<name>``."""
    return resources.files("hardware").joinpath("data", name).read_text(encoding="utf-8")


def _checksum(text: str) -> str:
    """A file's identity for the snapshot: CRC-32 and length of its UTF-8 bytes (an edit changes it)."""
    data = text.encode("utf-8")
    return f"{zlib.crc32(data):08x}:{len(data)}"


def _fields(obj: Any) -> dict:
    """A dataclass's fields as JSON data (read-only mappings as objects, tuples of tiers as lists)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, MappingProxyType):
            v = dict(v)
        elif isinstance(v, tuple):
            v = [_fields(t) for t in v]
        elif isinstance(v, Topology):
            v = _fields(v)
        elif isinstance(v, DeviceSpec):
            v = v.name  # the catalog device of that name (``_cluster``)
        out[f.name] = v
    return out


def encode(parts: tuple, texts: Mapping[str, str], documents: Mapping[str, Any]) -> str:
    """The snapshot text of ``parse_catalog``'s ``parts`` (devices, device aliases, prices,
    clusters, cluster aliases) and the parsed ``documents``, made from the YAML ``texts`` (file
    name -> text)."""
    devices, dev_aliases, prices, clusters, cl_aliases = parts
    doc = {"format": _FORMAT, "checksum": {name: _checksum(text) for name, text in texts.items()},
           "devices": {k: _fields(v) for k, v in devices.items()}, "device_aliases": dict(dev_aliases),
           "prices": {k: _fields(v) for k, v in prices.items()},
           "clusters": {k: _fields(v) for k, v in clusters.items()}, "cluster_aliases": dict(cl_aliases),
           "documents": dict(documents)}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def build(read: Callable[[str], str]) -> str:
    """The snapshot of the packaged data as ``read(file name)`` gives it (the YAML parsed and
    validated)."""
    from hardware.catalog_yaml import CATALOG_FILES, parse_catalog
    from hardware.yaml_io import safe_load

    texts = {name: read(name) for name in (*CATALOG_FILES, *DOCUMENTS)}
    return encode(parse_catalog(read), texts, {name: safe_load(texts[name]) for name in DOCUMENTS})


def _device(d: dict) -> DeviceSpec:
    return DeviceSpec(**{**d, "peak_flops_per_s": MappingProxyType(d["peak_flops_per_s"]),
                         "sources": MappingProxyType(d["sources"])})


def _cluster(c: dict, devices: Mapping[str, DeviceSpec]) -> Cluster:
    return Cluster(**{**c, "device": devices[c["device"]], "tiers": tuple(Tier(**t) for t in c["tiers"]),
                      "side_tiers": tuple(Tier(**t) for t in c["side_tiers"]),
                      "topology": Topology(**c["topology"]), "sources": MappingProxyType(c["sources"])})


def fresh(snapshot: str | None, read: Callable[[str], str]) -> dict | None:
    """The parsed ``snapshot`` (its text; None: there is none) when every YAML file it was made
    from (``read(file name)``) still has its recorded checksum; else None."""
    if snapshot is None:
        return None
    doc = json.loads(snapshot)
    if doc.get("format") != _FORMAT or any(_checksum(read(name)) != c for name, c in doc["checksum"].items()):
        return None
    return doc


@functools.lru_cache(maxsize=1)
def packaged() -> dict | None:
    """The packaged snapshot, parsed once per process, while it is fresh (``fresh``); else None."""
    try:
        text = read_data(SNAPSHOT_FILE)
    except FileNotFoundError:
        return None
    return fresh(text, read_data)


def catalog_parts(doc: Mapping) -> tuple:
    """The catalog a fresh snapshot holds: devices, device aliases, prices, clusters, cluster aliases."""
    devices = {k: _device(v) for k, v in doc["devices"].items()}
    prices = {k: NetworkPrices(**v) for k, v in doc["prices"].items()}
    clusters = {k: _cluster(v, devices) for k, v in doc["clusters"].items()}
    return devices, dict(doc["device_aliases"]), prices, clusters, dict(doc["cluster_aliases"])


def document(name: str) -> Any:
    """The parsed packaged YAML document ``name`` (one of ``DOCUMENTS``) from the snapshot, or
    None when the snapshot is not fresh (the caller parses the YAML)."""
    doc = packaged()
    return None if doc is None else doc["documents"].get(name)


def main() -> None:
    """Print the snapshot of the packaged data (``python -m hardware.catalog_snapshot``)."""
    print(build(read_data), end="")


if __name__ == "__main__":  # pragma: no cover
    main()
