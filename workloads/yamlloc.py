"""YAML loading that remembers where every value came from.

``load_yaml_with_locations`` returns the parsed data together with a map from a key path
(tuple of dict keys / list indices) to its ``(line, column)`` (1-based), so that validation
errors can be reported as ``deploy.yaml:12:5: serving.decode.ep: ...``. ``set_path`` applies
``--set a.b.c=value`` overrides, whose values are parsed as YAML scalars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Location = tuple[int, int]
PathKey = tuple[Any, ...]


class ConfigError(ValueError):
    """A user-facing configuration error; its message is one line with file:line:col."""


def _construct(node: yaml.Node, path: PathKey, locs: dict[PathKey, Location], loader: yaml.SafeLoader) -> Any:
    locs[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise ConfigError(f"{{file}}:{line}:{col}: {_dotted(path + (key,))}: duplicate key")
            locs[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(value_node, path + (key,), locs, loader)
            # keep the key's own location (errors about a field point at its key)
            locs[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(child, path + (i,), locs, loader) for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml_with_locations(text: str, filename: str = "<string>") -> tuple[Any, dict[PathKey, Location]]:
    """Parse ``text``; return (data, locations). Raises ConfigError naming file:line:col."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        locs: dict[PathKey, Location] = {}
        data = {} if node is None else _construct(node, (), locs, loader)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("{file}", filename)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    finally:
        loader.dispose()
    return data, locs


def load_yaml_with_locations(path: str | Path) -> tuple[Any, dict[PathKey, Location]]:
    """Read and parse a YAML file; a missing file is a ConfigError naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read file: {exc.strerror or exc}") from None
    return parse_yaml_with_locations(text, str(p))


def _dotted(path: PathKey) -> str:
    parts: list[str] = []
    for key in path:
        if isinstance(key, int) and parts:
            parts[-1] += f"[{key}]"
        else:
            parts.append(str(key))
    return ".".join(parts) or "<root>"


def dotted(path: PathKey) -> str:
    """``('serving', 'decode', 'ep')`` -> ``'serving.decode.ep'``; list indices as ``[i]``."""
    return _dotted(path)


def locate(locs: dict[PathKey, Location], path: PathKey) -> Location | None:
    """Location of ``path`` or of its nearest ancestor present in the file."""
    p = tuple(path)
    while True:
        if p in locs:
            return locs[p]
        if not p:
            return None
        p = p[:-1]


def set_path(data: dict[str, Any], dotted_key: str, raw_value: str) -> None:
    """Apply one ``--set a.b.c=value`` override in place (value parsed as a YAML scalar)."""
    keys = [k for k in dotted_key.split(".") if k]
    if not keys:
        raise ConfigError(f"--set {dotted_key}={raw_value}: empty key")
    try:
        value = yaml.safe_load(raw_value) if raw_value != "" else ""
    except yaml.YAMLError:
        value = raw_value
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(key)]
                continue
            except (ValueError, IndexError):
                raise ConfigError(f"--set {dotted_key}: {'.'.join(keys[: i + 1])} is not a valid list index") from None
        child = node.get(key)
        if child is None:
            child = {}
            node[key] = child
        if not isinstance(child, (dict, list)):
            raise ConfigError(f"--set {dotted_key}: {'.'.join(keys[: i + 1])} is a value, not a section")
        node = child
    if isinstance(node, list):
        try:
            node[int(keys[-1])] = value
        except (ValueError, IndexError):
            raise ConfigError(f"--set {dotted_key}: {keys[-1]} is not a valid list index") from None
    else:
        node[keys[-1]] = value


def anchor_directory(data: Any, key: str, base_dir: str | Path) -> None:
    """Make ``data[key]``, a directory path relative to the YAML file's folder ``base_dir``, absolute
    (in place), so that it means the same from any working directory. Values that are not an
    existing directory there (e.g. a shipped profile's name) are left as written."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, str) and value.strip() and not Path(value).expanduser().is_absolute():
        cand = Path(base_dir) / Path(value).expanduser()
        if cand.is_dir():
            data[key] = str(cand.resolve())


#: Discriminator tags pydantic adds to error locations of tagged unions (not YAML keys).
UNION_TAGS = frozenset({"colocated", "disaggregated", "fixed", "uniform", "lognormal", "poisson", "gamma", "trace"})


def model_at(root: Any, path: PathKey) -> Any:
    """The pydantic model class whose fields live at ``path`` below ``root`` (or None)."""
    from pydantic import BaseModel

    model: Any = root
    for key in path:
        if isinstance(key, int):
            continue
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            return None
        ann = field.annotation
        options = [ann, *getattr(ann, "__args__", ())]
        for inner in list(options):  # Annotated[Union[...], ...] nests one level deeper
            options += list(getattr(getattr(inner, "__origin__", None), "__args__", ()) or ())
        nxt = [c for c in options if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nxt:
            return None
        model = nxt[0]
    return model


def format_validation_error(exc: Any, filename: str, locs: dict[PathKey, Location], root: Any) -> str:
    """One line ``file:line:col: dotted.field: problem (valid: ...)`` for a pydantic ValidationError."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x in UNION_TAGS))
    where = locate(locs, loc)
    prefix = f"{filename}:{where[0]}:{where[1]}" if where else filename
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        owner = model_at(root, loc[:-1])
        msg = "unknown field" + (f" (valid: {', '.join(owner.model_fields)})" if owner else "")
    elif err["type"] in ("literal_error", "union_tag_invalid"):
        ctx = err.get("ctx", {})
        msg = f"{err.get('input')!r} is not allowed (valid: {ctx.get('expected') or ctx.get('expected_tags')})"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{prefix}: {dotted(loc)}: {msg}{more}"
