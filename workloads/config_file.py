"""One loader for every config file a command reads: deployment, plan or training job.

``load_config_file(path)`` reads the file once (size and UTF-8 checked before parsing, see
``workloads.yamlloc.read_config_text``), parses it once within the YAML limits, and detects
its kind from the parsed data (``detect_kind``). The schema loaders
(``workloads.deployment.load_deployment``, ``workloads.training.load_training_job``,
``planner.load_plan``) take a path or an already loaded ``ConfigFile`` and apply ``--set``
overrides with ``apply_overrides``, so every command makes the same checks in the same order.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from workloads.yamlloc import (ConfigError, Location, PathKey, anchor_directory, parse_yaml_with_locations,
                               read_config_text, set_path)

__all__ = ["ConfigFile", "KINDS", "PLAN_KEYS", "TRAINING_KEYS", "DEPLOYMENT_KEYS", "load_config_file",
           "open_config", "detect_kind", "apply_overrides", "require_kind"]

KINDS = ("deployment", "plan", "training")

#: Top-level keys only a PLAN.yaml has (``planner.schema.PlanConfig``; a test keeps them in step).
PLAN_KEYS = frozenset({"hardware", "search", "verify", "objective"})
#: Top-level keys only a training job has (``workloads.training.TrainingJob``), or its wrapper.
TRAINING_KEYS = frozenset({"training", "global_batch", "seq_len", "parallelism", "precision", "micro_batch_size",
                           "recompute", "optimizer_moment_dtype", "grad_dtype", "include_mtp", "memory_limit_gb",
                           "memory_reserved_gb", "comm_sms", "moe_imbalance"})
#: Top-level keys only a deployment has (``workloads.deployment.Deployment``).
DEPLOYMENT_KEYS = frozenset({"serving"})

_COMMAND = {"deployment": "clustersim simulate", "plan": "clustersim plan or what-if",
            "training": "clustersim simulate or plan"}


@dataclass(frozen=True)
class ConfigFile:
    """A parsed config file: its name (for messages), data, key locations and detected kind."""

    filename: str
    data: Any
    locs: dict[PathKey, Location]
    kind: str | None  # "deployment", "plan", "training", or None when nothing tells

    def copy_data(self) -> Any:
        """A deep copy of the data, for overrides that must not touch this file's."""
        return copy.deepcopy(self.data)


def detect_kind(data: Any) -> str | None:
    """The kind of a parsed config (``deployment``, ``plan`` or ``training``), from the top-level
    keys only that kind has; None when no key (or a tie) tells."""
    if not isinstance(data, dict):
        return None
    keys = {k for k in data if isinstance(k, str)}
    if "training" in keys:
        return "training"
    votes = {"plan": len(keys & PLAN_KEYS), "training": len(keys & TRAINING_KEYS),
             "deployment": len(keys & DEPLOYMENT_KEYS)}
    best = max(votes.values())
    winners = [k for k, v in votes.items() if v == best]
    return winners[0] if best and len(winners) == 1 else None


def load_config_file(path: str | Path) -> ConfigFile:
    """Read, check and parse a config file once; ConfigError (one located line) on any problem.
    Paths written in the file (a trace, a profile directory) are made relative to its folder."""
    filename = str(path)
    data, locs = parse_yaml_with_locations(read_config_text(path), filename)
    anchor_relative_paths(data, Path(path).parent)
    return ConfigFile(filename, data, locs, detect_kind(data))


def anchor_relative_paths(data: Any, base_dir: Path) -> None:
    """Make the paths a config file names relative to its own folder ``base_dir``, in place:
    ``workload.arrival.path`` of a trace (absolute stays) and a ``profile:`` directory (a shipped
    profile's name stays). A training job's fields may sit under a ``training:`` wrapper. Call
    before ``--set`` overrides, whose values are relative to the working directory."""
    if not isinstance(data, dict):
        return
    for scope in (data, data.get("training")):
        if isinstance(scope, dict):
            anchor_directory(scope, "profile", base_dir)
    workload = data.get("workload")
    arrival = workload.get("arrival") if isinstance(workload, dict) else None
    if not isinstance(arrival, dict) or arrival.get("kind") != "trace" or not isinstance(arrival.get("path"), str):
        return
    trace = Path(arrival["path"]).expanduser()
    if not trace.is_absolute():
        arrival["path"] = os.path.normpath(os.path.abspath(base_dir / trace))


def open_config(source: str | Path | ConfigFile) -> ConfigFile:
    """``source`` itself when already loaded, else ``load_config_file(source)``."""
    return source if isinstance(source, ConfigFile) else load_config_file(source)


def require_kind(doc: ConfigFile, kind: str) -> None:
    """Refuse a file that is clearly of another kind than ``kind``, naming what it is."""
    if doc.kind is not None and doc.kind != kind:
        raise ConfigError(f"{doc.filename}:1:1: <root>: this is a {doc.kind} file, not a {kind} file "
                          f"(a {doc.kind} file is read by {_COMMAND[doc.kind]})")


def apply_overrides(data: Any, overrides: Iterable[str], example: str = "serving.pool.instances=2",
                    strip_prefix: str = "") -> Any:
    """Apply ``--set KEY=VALUE`` overrides in place (a non-mapping root becomes a mapping); returns data."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. {example}")
        key, value = item.split("=", 1)
        if not isinstance(data, dict):
            data = {}
        key = key.strip()
        if strip_prefix and key.startswith(strip_prefix):
            key = key[len(strip_prefix):]
        set_path(data, key, value.strip())
    return data
