"""The parsed hardware catalog as JSON: what ``hardware.catalog`` loads at start-up instead of
validating the YAML again (issue 15: a short command's start-up).

The packaged YAML (``hardware/data``) stays the one source. ``catalog_snapshot.json`` beside it
holds what ``hardware.catalog_yaml.parse_catalog`` makes of those files -- the devices, prices and
clusters in SI, field by field, with the SHA-256 of every YAML file it was made from. ``load``
answers the snapshot only while every one of those files still has its recorded hash; otherwise
(a file edited, the snapshot missing or of another format) it answers None and the catalog
parses and validates the YAML as before. JSON keeps what the objects hold: floats as their
shortest repr (the same float back), ints as ints, mappings in their order; a cluster's device is
its catalog device by name, as the parser shares it. ``tests/test_catalog_snapshot.py`` holds
the snapshot to the parse of the YAML (``repr`` of the whole catalog, types included).

Regenerate after editing a catalog file::

    python -m hardware.catalog_snapshot > hardware/data/catalog_snapshot.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import resources
from types import MappingProxyType
from typing import Any, Callable, Mapping

from hardware.topology import NetworkPrices
from hardware.types import Cluster, DeviceSpec, Tier, Topology

SNAPSHOT_FILE = "catalog_snapshot.json"
_FORMAT = 1


def read_data(name: str) -> str:
    """The text of the packaged data file ``hardware/data/<name>``."""
    return resources.files("hardware").joinpath("data", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def encode(parts: tuple, texts: Mapping[str, str]) -> str:
    """The snapshot text of ``parse_catalog``'s ``parts`` (devices, device aliases, prices,
    clusters, cluster aliases) made from the YAML ``texts`` (file name -> text)."""
    devices, dev_aliases, prices, clusters, cl_aliases = parts
    doc = {"format": _FORMAT, "sha256": {name: _sha256(text) for name, text in texts.items()},
           "devices": {k: _fields(v) for k, v in devices.items()}, "device_aliases": dict(dev_aliases),
           "prices": {k: _fields(v) for k, v in prices.items()},
           "clusters": {k: _fields(v) for k, v in clusters.items()}, "cluster_aliases": dict(cl_aliases)}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def _device(d: dict) -> DeviceSpec:
    return DeviceSpec(**{**d, "peak_flops_per_s": MappingProxyType(d["peak_flops_per_s"]),
                         "sources": MappingProxyType(d["sources"])})


def _cluster(c: dict, devices: Mapping[str, DeviceSpec]) -> Cluster:
    return Cluster(**{**c, "device": devices[c["device"]], "tiers": tuple(Tier(**t) for t in c["tiers"]),
                      "side_tiers": tuple(Tier(**t) for t in c["side_tiers"]),
                      "topology": Topology(**c["topology"]), "sources": MappingProxyType(c["sources"])})


def load(snapshot: str | None, read: Callable[[str], str]) -> tuple | None:
    """The catalog parts held by ``snapshot`` (its text; None: there is none) when every YAML file
    it was made from (``read(file name)``) still has its recorded hash; else None."""
    if snapshot is None:
        return None
    doc = json.loads(snapshot)
    if doc.get("format") != _FORMAT or any(_sha256(read(name)) != h for name, h in doc["sha256"].items()):
        return None
    devices = {k: _device(v) for k, v in doc["devices"].items()}
    prices = {k: NetworkPrices(**v) for k, v in doc["prices"].items()}
    clusters = {k: _cluster(v, devices) for k, v in doc["clusters"].items()}
    return devices, doc["device_aliases"], prices, clusters, doc["cluster_aliases"]


def main() -> None:
    """Print the snapshot of the packaged YAML (``python -m hardware.catalog_snapshot``)."""
    from hardware.catalog_yaml import CATALOG_FILES, parse_catalog

    print(encode(parse_catalog(read_data), {name: read_data(name) for name in CATALOG_FILES}), end="")


if __name__ == "__main__":  # pragma: no cover
    main()
