"""YAML loading that remembers where every value came from, within the input limits.

``load_yaml_with_locations`` returns the parsed data together with a map from a key path
(tuple of dict keys / list indices) to its ``(line, column)`` (1-based), so that validation
errors can be reported as ``deploy.yaml:12:5: serving.decode.ep: ...``. The document is built
from the parser's events without recursion and within ``workloads.limits`` (file size, values
counted through aliases, nesting depth; recursive aliases refused), and ``read_config_text``
refuses oversized, binary and non-UTF-8 files before parsing. ``set_path`` applies ``--set
a.b.c=value`` overrides, whose values go through the same parser; ``format_validation_error``
turns a pydantic error into the one-line ``file:line:col: field: problem (valid: ...)``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workloads.limits import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, README_SECTION

Location = tuple[int, int]
PathKey = tuple[Any, ...]


class ConfigError(ValueError):
    """A user-facing configuration error; its message is one line with file:line:col."""


def parse_yaml_with_locations(text: str, filename: str = "<string>") -> tuple[Any, dict[PathKey, Location]]:
    """Parse one YAML document; return (data, locations). Raises ConfigError naming file:line:col.

    The document is built from the parser's events without recursion, within the limits of
    ``workloads.limits``: at most ``MAX_YAML_NODES`` values (every use of an alias counts the
    values it copies), nesting at most ``MAX_YAML_DEPTH`` deep, no alias inside its own anchor.
    Aliases are copied (``--set`` on one copy never changes another); ``<<`` merge keys work.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{filename}: {len(text):,} characters, more than a config file may hold "
                          f"(at most {MAX_CONFIG_BYTES:,} bytes; see {README_SECTION})")
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        return _Composer(loader, filename).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        problem = " ".join(str(exc.problem or exc.context).split())
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(f"{filename}:{line}:{column}: invalid YAML: the control character U+{exc.character:04X} "
                          f"is not allowed (a config must be plain text)") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_with_locations(path: str | Path) -> tuple[Any, dict[PathKey, Location]]:
    """Read (``read_config_text``) and parse a YAML file."""
    return parse_yaml_with_locations(read_config_text(path), str(path))


def read_config_text(path: str | Path) -> str:
    """The text of a config file: at most ``MAX_CONFIG_BYTES`` bytes of UTF-8, else a ConfigError.

    The size is checked before the file is read, so a huge file costs nothing.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(MAX_CONFIG_BYTES + 1) if size <= MAX_CONFIG_BYTES else b""
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read file: {exc.strerror or exc}") from None
    if size > MAX_CONFIG_BYTES or len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {max(size, len(raw)):,} bytes, larger than a config file may be "
                          f"(at most {MAX_CONFIG_BYTES:,} bytes; see {README_SECTION})")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"{p}:{_where(raw, nul)}: not a text file (a NUL byte; a config must be YAML saved as UTF-8)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}:{_where(raw, exc.start)}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x}; "
                          f"a config must be YAML saved as UTF-8)") from None


def _where(raw: bytes, offset: int) -> str:
    """``line:column`` (1-based) of a byte offset."""
    newline = b"\n"
    line_start = raw.rfind(newline, 0, offset) + 1
    return f"{raw.count(newline, 0, offset) + 1}:{offset - line_start + 1}"


_MERGE_TAG = "tag:yaml.org,2002:merge"
_MERGE = object()  # the value of a "<<" merge key
_COLLECTION_TAGS = (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_NO_KEY = object()


@dataclass
class _Open:
    """A mapping or list being built: its value, where it is, and what it has seen so far."""

    value: Any
    path: PathKey
    mark: Any
    anchor: str | None
    first_log: int  # index into the composer's location log where this subtree starts
    first_node: int  # node count before this collection
    height: int = 1  # levels of nesting in this subtree (a scalar has 0)
    key: Any = _NO_KEY  # a mapping's key waiting for its value
    key_mark: Any = None
    merges: list = field(default_factory=list)


@dataclass(frozen=True)
class _Anchor:
    value: Any
    nodes: int
    height: int
    log: tuple  # ((relative path, location), ...)
    mark: Any


class _Composer:
    """One YAML document from the parser's events, iteratively and within the input limits."""

    def __init__(self, loader: yaml.SafeLoader, filename: str):
        self.ld, self.filename = loader, filename
        self.locs: dict[PathKey, Location] = {}
        self.log: list[tuple[PathKey, Location]] = []
        self.anchors: dict[str, _Anchor] = {}
        self.stack: list[_Open] = []
        self.nodes = 0

    def fail(self, mark: Any, path: PathKey, problem: str) -> None:
        where = f"{self.filename}:{mark.line + 1}:{mark.column + 1}" if mark is not None else self.filename
        name = _dotted(path) if len(path) <= 8 else _dotted(path[:4]) + "..."
        raise ConfigError(f"{where}: {name}: {problem}")

    def document(self) -> tuple[Any, dict[PathKey, Location]]:
        ld = self.ld
        ld.get_event()  # stream start
        if ld.check_event(yaml.StreamEndEvent):
            return {}, {}
        ld.get_event()  # document start
        data = self.node()
        ld.get_event()  # document end
        if not ld.check_event(yaml.StreamEndEvent):
            self.fail(ld.get_event().start_mark, (), "expected one YAML document, found a second ('---')")
        return data, self.locs

    def node(self) -> Any:
        """Consume the events of one node (the document root) and return its value."""
        while True:
            ev = self.ld.get_event()
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self.open(ev)
                continue
            if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = self.stack.pop()
                value, height, mark = self.close(frame), frame.height, frame.mark
            elif isinstance(ev, yaml.AliasEvent):
                value, height, mark = self.alias(ev), None, ev.start_mark
            else:
                value, height, mark = self.scalar(ev), 0, ev.start_mark
            if not self.stack:
                return value
            self.deliver(self.stack[-1], value, height, mark, ev)

    def child_path(self, ev: Any) -> PathKey:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return top.path + (len(top.value),)
        if top.key is _NO_KEY:  # this node is a key
            if not isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent)):
                self.fail(ev.start_mark, top.path, "a key must be a plain value, not a mapping or a list")
            return top.path
        return top.path + (top.key if top.key is not _MERGE else "<<",)

    def count(self, n: int, mark: Any, path: PathKey, aliased: bool = False) -> None:
        self.nodes += n
        if self.nodes > MAX_YAML_NODES:
            what = "after expanding aliases " if aliased else ""
            self.fail(mark, path, f"the document holds more than {MAX_YAML_NODES:,} values {what}"
                                  f"(at most {MAX_YAML_NODES:,}; see {README_SECTION})")

    def record(self, path: PathKey, mark: Any) -> None:
        loc = (mark.line + 1, mark.column + 1)
        self.locs[path] = loc
        self.log.append((path, loc))

    def check_anchor(self, ev: Any, path: PathKey) -> None:
        if ev.anchor is None:
            return
        first = self.anchors.get(ev.anchor)
        if first is not None or any(f.anchor == ev.anchor for f in self.stack):
            line = first.mark.line + 1 if first else next(f.mark.line + 1 for f in self.stack if f.anchor == ev.anchor)
            self.fail(ev.start_mark, path, f"duplicate anchor &{ev.anchor} (first defined on line {line})")

    def open(self, ev: Any) -> None:
        path = self.child_path(ev)
        if len(self.stack) >= MAX_YAML_DEPTH:
            self.fail(ev.start_mark, path, f"nested more than {MAX_YAML_DEPTH} levels deep "
                                           f"(at most {MAX_YAML_DEPTH}; see {README_SECTION})")
        if ev.tag not in _COLLECTION_TAGS:
            self.fail(ev.start_mark, path, f"the tag {ev.tag} is not supported in a config file")
        self.check_anchor(ev, path)
        first_node = self.nodes
        self.count(1, ev.start_mark, path)
        first_log = len(self.log)
        self.record(path, ev.start_mark)
        value: Any = {} if isinstance(ev, yaml.MappingStartEvent) else []
        self.stack.append(_Open(value, path, ev.start_mark, ev.anchor, first_log, first_node))

    def close(self, frame: _Open) -> Any:
        out = frame.value
        for mark, merged in frame.merges:  # explicit keys win, then earlier merges over later ones
            for k, v in merged.items():
                if k not in out:
                    out[k] = v
                    self.record(frame.path + (k,), mark)
        if frame.anchor is not None:
            n = len(frame.path)
            log = tuple((p[n:], loc) for p, loc in self.log[frame.first_log:])
            self.anchors[frame.anchor] = _Anchor(out, self.nodes - frame.first_node, frame.height, log, frame.mark)
        return out

    def scalar(self, ev: Any) -> Any:
        path = self.child_path(ev)
        self.check_anchor(ev, path)
        self.count(1, ev.start_mark, path)
        tag = ev.tag
        if tag is None or tag == "!":
            tag = self.ld.resolve(yaml.ScalarNode, ev.value, ev.implicit)
        if tag == _MERGE_TAG:
            value: Any = _MERGE
        else:
            node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
            try:
                value = self.ld.construct_object(node, deep=True)
            except yaml.MarkedYAMLError:
                raise
            except Exception as exc:  # e.g. an integer of more digits than Python converts
                self.fail(ev.start_mark, path, f"cannot read the value: {' '.join(str(exc).split())}")
            self.ld.constructed_objects.pop(node, None)
            if isinstance(value, str) and not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:  # a "\ud800" escape: no file or terminal can hold it
                    self.fail(ev.start_mark, path, "the text holds a lone UTF-16 surrogate escape (not valid text)")
        if self.stack and isinstance(self.stack[-1].value, dict) and self.stack[-1].key is _NO_KEY:
            pass  # a key: its location is recorded when its value arrives
        else:
            self.record(path, ev.start_mark)
        if ev.anchor is not None:
            self.anchors[ev.anchor] = _Anchor(value, 1, 0, (((), (ev.start_mark.line + 1, ev.start_mark.column + 1)),),
                                              ev.start_mark)
        return value

    def alias(self, ev: Any) -> Any:
        path = self.child_path(ev)
        found = self.anchors.get(ev.anchor)
        if found is None:
            if any(f.anchor == ev.anchor for f in self.stack):
                self.fail(ev.start_mark, path, f"alias *{ev.anchor} is inside its own anchor &{ev.anchor} "
                                               f"(a recursive alias; not allowed)")
            self.fail(ev.start_mark, path, f"alias *{ev.anchor} names no anchor defined before it")
        self.count(found.nodes, ev.start_mark, path, aliased=True)
        if len(self.stack) + found.height > MAX_YAML_DEPTH:
            self.fail(ev.start_mark, path, f"nested more than {MAX_YAML_DEPTH} levels deep after expanding "
                                           f"*{ev.anchor} (at most {MAX_YAML_DEPTH}; see {README_SECTION})")
        is_key = bool(self.stack) and isinstance(self.stack[-1].value, dict) and self.stack[-1].key is _NO_KEY
        if not is_key:
            for rel, loc in found.log:
                self.locs[path + rel] = loc
                self.log.append((path + rel, loc))
            self.record(path, ev.start_mark)
        return copy.deepcopy(found.value)

    def deliver(self, top: _Open, value: Any, height: int | None, mark: Any, ev: Any) -> None:
        """Put a finished node into the collection on top of the stack."""
        if height is None:  # an alias: its height is its anchor's
            height = self.anchors[ev.anchor].height
        top.height = max(top.height, height + 1)
        if isinstance(top.value, list):
            top.value.append(value)
            return
        if top.key is _NO_KEY:
            try:
                duplicate = value is not _MERGE and value in top.value
            except TypeError:
                self.fail(mark, top.path, "a key must be a plain value, not a mapping or a list")
            if duplicate:
                self.fail(mark, top.path + (value,), "duplicate key")
            top.key, top.key_mark = value, mark
            return
        key, top.key = top.key, _NO_KEY
        if key is _MERGE:
            merged = value if isinstance(value, list) else [value]
            if not merged or not all(isinstance(m, dict) for m in merged):
                self.fail(top.key_mark, top.path, "a << merge key needs a mapping or a list of mappings")
            top.merges.extend((top.key_mark, m) for m in merged)
            return
        top.value[key] = value
        self.record(top.path + (key,), top.key_mark)  # errors about a field point at its key


def _dotted(path: PathKey) -> str:
    parts: list[str] = []
    for key in path:
        if isinstance(key, int) and not isinstance(key, bool):
            if parts:
                parts[-1] += f"[{key}]"
            else:
                parts.append(f"[{key}]")
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
    if len(keys) > MAX_YAML_DEPTH:
        raise ConfigError(f"--set {dotted_key[:60]}...: more than {MAX_YAML_DEPTH} levels of keys")
    try:  # the same bounded parser as files (no alias bombs, no deep nesting)
        value, locs = parse_yaml_with_locations(raw_value, "--set") if raw_value != "" else ("", {(): (1, 1)})
        value = value if locs else None  # nothing but a comment: null, as yaml.safe_load reads it
    except ConfigError:
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
UNION_TAGS = frozenset({"colocated", "disaggregated", "fixed", "uniform", "lognormal", "poisson", "gamma", "trace",
                        "sessions", "shared_prefix", "geometric"})


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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _limit_note(bound: Any) -> str:
    from workloads import limits

    values = {v for k, v in vars(limits).items() if k.startswith("MAX_") and isinstance(v, (int, float))}
    return f"; see {README_SECTION}" if bound in values and bound > 1 else ""


def _problem(err: dict, root: Any, loc: PathKey) -> str:
    """The problem part of a one-line message for one pydantic error."""
    kind, ctx, inp = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        owner = model_at(root, loc[:-1])
        return "unknown field" + (f" (valid: {', '.join(owner.model_fields)})" if owner else "")
    if kind in ("literal_error", "union_tag_invalid"):
        return f"{_short(inp)} is not allowed (valid: {ctx.get('expected') or ctx.get('expected_tags')})"
    if kind == "missing":
        return "required field is missing"
    bounds = {"less_than_equal": ("le", "too large", "<="), "less_than": ("lt", "too large", "<"),
              "greater_than_equal": ("ge", "too small", ">="), "greater_than": ("gt", "too small", ">")}
    if kind in bounds:
        key, what, op = bounds[kind]
        return f"{_short(inp)} is {what} (valid: {op} {_num(ctx[key])}{_limit_note(ctx[key])})"
    if kind == "finite_number":
        return f"{_short(inp)} is not a finite number (valid: a finite number; .inf and .nan are refused)"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        hint = "; YAML reads 1e6 as text: write 1000000" if isinstance(inp, str) and "e" in inp.lower() else ""
        return f"{_short(inp)} is not an integer (valid: an integer{hint})"
    if kind in ("float_parsing", "float_type"):
        return f"{_short(inp)} is not a number (valid: a finite number)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of fields, got {_short(inp)}"
    if kind == "list_type":
        return f"expected a list, got {_short(inp)}"
    if kind == "string_type":
        return f"expected text, got {_short(inp)}"
    if kind == "bool_parsing" or kind == "bool_type":
        return f"{_short(inp)} is not a boolean (valid: true, false)"
    if kind == "too_long":
        limit = ctx.get("max_length")
        return f"{ctx.get('actual_length')} values, too many (valid: at most {limit}{_limit_note(limit)})"
    if kind == "value_error" and hasattr(ctx.get("error"), "msg"):
        return ctx["error"].msg
    return err["msg"].removeprefix("Value error, ")


def format_validation_error(exc: Any, filename: str, locs: dict[PathKey, Location], root: Any,
                            prefix: PathKey = ()) -> str:
    """One line ``file:line:col: dotted.field: problem (valid: ...)`` for a pydantic ValidationError.

    ``prefix``: where the validated data sits in the file (e.g. ``("training",)``). A validator
    error carrying ``path`` and ``msg`` attributes (a located rule) is reported at its path.
    """
    err = exc.errors(include_url=False)[0]
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x in UNION_TAGS))
    rule = (err.get("ctx") or {}).get("error")
    if hasattr(rule, "path") and hasattr(rule, "msg"):
        loc = loc + tuple(rule.path)
    msg = _problem(err, root, loc)
    path = tuple(prefix) + loc
    where = locate(locs, path)
    head = f"{filename}:{where[0]}:{where[1]}" if where else filename
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{head}: {dotted(path)}: {msg}{more}"
