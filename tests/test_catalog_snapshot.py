"""The catalog snapshot (``hardware.catalog_snapshot``) is the parse of the packaged YAML, exactly,
and is used only while it matches the YAML files."""

from __future__ import annotations

from hardware import catalog, catalog_snapshot
from hardware.catalog_yaml import CATALOG_FILES, parse_catalog

read = catalog_snapshot.read_data


def _snapshot() -> str:
    return read(catalog_snapshot.SNAPSHOT_FILE)


def test_the_snapshot_is_the_parse_of_the_yaml_files():
    fresh = catalog_snapshot.encode(parse_catalog(read), {name: read(name) for name in CATALOG_FILES})
    assert _snapshot() == fresh, ("hardware/data/catalog_snapshot.json is stale: "
                                  "python -m hardware.catalog_snapshot > hardware/data/catalog_snapshot.json")


def test_the_snapshot_loads_the_same_objects_as_the_yaml():
    """Field by field and type by type (``repr`` tells 1 from 1.0 and shows every mapping's
    order), and a cluster's device is the catalog's device object, as the parser shares it."""
    parsed = parse_catalog(read)
    loaded = catalog_snapshot.load(_snapshot(), read)
    assert loaded is not None
    assert repr(loaded) == repr(parsed)
    devices, _, _, clusters, _ = loaded
    assert all(c.device is devices[c.device.name] for c in clusters.values())
    catalog._catalog.cache_clear()
    try:
        assert repr(tuple(dict(p) for p in (catalog._catalog().devices, catalog._catalog().clusters))) == \
            repr((parsed[0], parsed[3]))
    finally:
        catalog._catalog.cache_clear()


def test_a_changed_yaml_file_is_parsed_not_snapshot():
    def edited(name: str) -> str:  # a comment added to one file
        return read(name) + ("\n# edited\n" if name == "clusters.yaml" else "")

    assert catalog_snapshot.load(_snapshot(), edited) is None
    assert catalog_snapshot.load(None, read) is None
    assert catalog_snapshot.load(_snapshot().replace('"format": 1', '"format": 0'), read) is None
