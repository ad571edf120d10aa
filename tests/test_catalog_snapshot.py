"""The hardware data snapshot (``hardware.catalog_snapshot``) is the parse of the packaged YAML,
exactly, and is used only while it matches the YAML files."""

from __future__ import annotations

from hardware import catalog, catalog_snapshot, collectives
from hardware.catalog_yaml import parse_catalog

read = catalog_snapshot.read_data


def _snapshot() -> str:
    return read(catalog_snapshot.SNAPSHOT_FILE)


def test_the_snapshot_is_the_parse_of_the_yaml_files():
    assert _snapshot() == catalog_snapshot.build(read), (
        "hardware/data/catalog_snapshot.json is stale: "
        "python -m hardware.catalog_snapshot > hardware/data/catalog_snapshot.json")
    assert catalog_snapshot.packaged() is not None  # fresh: what the catalog and the collectives load


def test_the_snapshot_loads_the_same_objects_as_the_yaml():
    """Field by field and type by type (``repr`` tells 1 from 1.0 and shows every mapping's
    order), and a cluster's device is the catalog's device object, as the parser shares it."""
    parsed = parse_catalog(read)
    loaded = catalog_snapshot.catalog_parts(catalog_snapshot.fresh(_snapshot(), read))
    assert repr(loaded) == repr(parsed)
    devices, _, _, clusters, _ = loaded
    assert all(c.device is devices[c.device.name] for c in clusters.values())
    catalog._catalog.cache_clear()
    try:
        cat = catalog._catalog()
        assert repr((dict(cat.devices), dict(cat.clusters))) == repr((parsed[0], parsed[3]))
    finally:
        catalog._catalog.cache_clear()


def test_the_communication_parameters_from_the_snapshot_are_the_yamls():
    from_yaml = collectives.load_comm_calibration.__wrapped__(str(collectives._CALIBRATION_PATH))  # parsed
    from_snapshot = collectives.load_comm_calibration.__wrapped__()
    assert catalog_snapshot.document("comm_calibration.yaml") is not None
    assert repr(from_snapshot) == repr(from_yaml)


def test_a_changed_yaml_file_is_parsed_not_snapshot():
    for edited_file in ("clusters.yaml", "comm_calibration.yaml"):
        def edited(name: str, edited_file=edited_file) -> str:  # a comment added to one file
            return read(name) + ("\n# edited\n" if name == edited_file else "")

        assert catalog_snapshot.fresh(_snapshot(), edited) is None
    assert catalog_snapshot.fresh(None, read) is None
    assert catalog_snapshot.fresh(_snapshot().replace('"format": 2', '"format": 1'), read) is None
