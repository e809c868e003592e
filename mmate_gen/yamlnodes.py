"""Position-keeping YAML: compose files into PyYAML nodes and read typed values from them.

PyYAML's node marks are 0-based; every ``Location`` here is 1-based. A ``Reader`` reads one
file's nodes and records each problem as a ``Diagnostic`` instead of raising, so one run reports
everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .diagnostics import Diagnostic, Location
from .ir import JsonValue
from .names import did_you_mean, one_of

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"

_CONSTRUCTOR = yaml.SafeLoader("")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_UNIT_BYTES = {
    "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2, "GB": 1000**3, "GiB": 1024**3,
}  # fmt: skip


def compose_file(path: Path, display: str, sink: list[Diagnostic]) -> yaml.Node | None:
    """The root node of a YAML file, or None (with a diagnostic) if it cannot be read or parsed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        sink.append(
            Diagnostic(
                Location(display, 1, 1),
                f"cannot read spec file: {exc.strerror or exc}",
                "make it a readable UTF-8 text file",
            )
        )
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        sink.append(_undecodable(data, exc, display))
        return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        looped = _recursive_node(root) if root is not None else None
        if looped is not None:
            mark = looped.start_mark
            sink.append(
                Diagnostic(
                    Location(display, mark.line + 1, mark.column + 1),
                    "YAML alias makes a value contain itself",
                    "write the value out instead of referring to an enclosing anchor",
                )
            )
            return None
        return root
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        sink.append(
            Diagnostic(
                Location(display, line, col),
                f"YAML syntax error: {problem}",
                "fix the YAML syntax (check indentation; quote values containing ': ', ' #', "
                "'[' or '{')",
            )
        )
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        sink.append(
            Diagnostic(
                Location(display, line, col),
                f"the character U+{exc.character:04X} is not allowed in a YAML file",
                "remove it or write it as an escape in a double-quoted string, e.g. "
                f'"\\u{exc.character:04x}"',
            )
        )
    except yaml.YAMLError as exc:
        sink.append(
            Diagnostic(Location(display, 1, 1), f"YAML syntax error: {exc}", "fix the YAML syntax")
        )
    return None


def _line_col(text: str, position: int) -> tuple[int, int]:
    """1-based line and column (in characters) of ``text[position]``."""
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _undecodable(data: bytes, exc: UnicodeDecodeError, display: str) -> Diagnostic:
    """Where the first byte that is not UTF-8 is: its line and its column in characters (the
    bytes before it decode, since decoding stopped at it)."""
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    line = data.count(b"\n", 0, exc.start) + 1
    col = len(data[line_start : exc.start].decode("utf-8")) + 1
    shown = " ".join(f"0x{b:02x}" for b in data[exc.start : exc.end])
    return Diagnostic(
        Location(display, line, col),
        f"the spec file is not UTF-8: byte {shown} ({exc.reason}) cannot be read",
        "save the file as UTF-8 (an editor's encoding setting, or iconv -f latin1 -t utf-8), or "
        "retype the character at this position",
    )


def _recursive_node(root: yaml.Node) -> yaml.Node | None:
    """A collection node that contains itself through aliases (``&a [*a]``), else None."""
    open_nodes: set[int] = set()
    done: set[int] = set()

    def visit(node: yaml.Node) -> yaml.Node | None:
        if isinstance(node, yaml.ScalarNode) or id(node) in done:
            return None
        if id(node) in open_nodes:
            return node
        open_nodes.add(id(node))
        children = (
            [part for pair in node.value for part in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
        )
        for child in children:
            found = visit(child)
            if found is not None:
                return found
        open_nodes.discard(id(node))
        done.add(id(node))
        return None

    return visit(root)


def describe(node: yaml.Node) -> str:
    """What a node holds, for messages: ``a list``, ``a number``..."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag
    if tag in (_INT, _FLOAT):
        return f"the number {node.value}"
    if tag == _BOOL:
        return f"the boolean {node.value}"
    if tag == _NULL:
        return "empty (null)"
    if tag == _TIMESTAMP:
        return f"the date {node.value}"
    if tag != _STR:
        return f"a value tagged {tag}"
    return f'the string "{node.value}"'


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def parse_duration(text: str) -> int | None:
    """Milliseconds of ``500``, ``500ms``, ``30s``, ``5m``, ``1h``, ``2d``; else None."""
    match = _DURATION_RE.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_MS[match.group(2) or "ms"]


def parse_size(text: str) -> int | None:
    """Bytes of ``512``, ``512B``, ``64KiB`` (1024-based), ``64KB`` (1000-based), ``1MiB``...;
    else None."""
    match = _SIZE_RE.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_BYTES[match.group(2) or "B"]


ValuePath = tuple[str | int, ...]
"""Where in a value: the mapping keys and list indexes leading to a part of it (``()``: all)."""


class Keys(dict[str, "Entry"]):
    """The known entries of a mapping; ``typos`` holds the known keys that unknown keys were likely
    misspellings of, so that a missing-key error is not reported on top of the did-you-mean."""

    typos: set[str]

    def lacks(self, key: str) -> bool:
        return key not in self and key not in self.typos


@dataclass(frozen=True, slots=True)
class Entry:
    """One key of a mapping with its key and value nodes."""

    key: str
    key_node: yaml.Node
    value: yaml.Node


class Reader:
    """Reads typed values out of one file's nodes, recording problems in ``sink``."""

    def __init__(self, path: str, sink: list[Diagnostic]) -> None:
        self.path = path
        self.sink = sink

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, where: yaml.Node | Location, message: str, hint: str) -> None:
        loc = where if isinstance(where, Location) else self.loc(where)
        self.sink.append(Diagnostic(loc, message, hint))

    def warn(self, where: yaml.Node | Location, message: str, hint: str) -> None:
        loc = where if isinstance(where, Location) else self.loc(where)
        self.sink.append(Diagnostic(loc, message, hint, "warning"))

    # -- containers ----------------------------------------------------------------------------

    def mapping(
        self,
        node: yaml.Node,
        what: str,
        allow_null: bool = False,
        hint: str = "write key: value lines",
    ) -> list[Entry] | None:
        """The entries of a mapping node, first occurrence of each key; duplicates are reported."""
        if allow_null and is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping, not {describe(node)}", hint)
            return None
        entries: list[Entry] = []
        seen: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                self.error(
                    key_node, f"a key of {what} is not a name", "write a plain name as the key"
                )
                continue
            key = str(key_node.value)
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.error(
                    key_node,
                    f'key "{key}" appears twice in {what}',
                    f"keep only one of them (the first is at line {first})",
                )
                continue
            seen[key] = key_node
            entries.append(Entry(key, key_node, value))
        return entries

    def known(self, entries: list[Entry], allowed: tuple[str, ...], what: str) -> Keys:
        """The entries whose key is in ``allowed``; other keys are reported with a did-you-mean."""
        result = Keys()
        result.typos = set()
        for entry in entries:
            if entry.key in allowed:
                result[entry.key] = entry
                continue
            hint = did_you_mean(entry.key, allowed, one_of(allowed))
            if hint.startswith("did you mean"):
                result.typos.add(hint.split('"')[1])
            self.error(entry.key_node, f'unknown key "{entry.key}" in {what}', hint)
        return result

    def sequence(
        self, node: yaml.Node, what: str, hint: str = "write a YAML list"
    ) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            if isinstance(node, yaml.ScalarNode) and node.tag != _NULL and hint.endswith("list"):
                hint = f"write a list: [{node.value}]"
            self.error(node, f"{what} must be a list, not {describe(node)}", hint)
            return None
        return list(node.value)

    # -- scalars -------------------------------------------------------------------------------

    def string(self, node: yaml.Node, what: str, example: str = "a string") -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            return str(node.value)
        hint = (
            f'write it as a quoted string: "{node.value}"'
            if _is_plain(node)
            else f"write {example}"
        )
        self.error(node, f"{what} must be a string, not {describe(node)}", hint)
        return None

    def name(self, node: yaml.Node, what: str) -> str | None:
        """A name: plain scalars of any tag count by their text (``on`` is a name)."""
        if isinstance(node, yaml.ScalarNode) and node.tag != _NULL:
            return str(node.value)
        self.error(node, f"{what} must be a name, not {describe(node)}", "write the name")
        return None

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return _CONSTRUCTOR.construct_yaml_bool(node)
        self.error(
            node, f"{what} must be true or false, not {describe(node)}", "write true or false"
        )
        return None

    def integer(
        self, node: yaml.Node, what: str, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = _int_value(node)
        if value is None:
            self.error(
                node,
                f"{what} must be a whole number, not {describe(node)}",
                _range(minimum, maximum),
            )
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.error(node, f"{what} is {value}, out of range", _range(minimum, maximum))
            return None
        return value

    def number(self, node: yaml.Node, what: str) -> int | float | None:
        value = _int_value(node)
        if value is not None:
            return value
        if isinstance(node, yaml.ScalarNode) and node.tag == _FLOAT:
            return _CONSTRUCTOR.construct_yaml_float(node)
        self.error(
            node,
            f"{what} must be a number, not {describe(node)}",
            "write a number such as 0 or 1.5",
        )
        return None

    def duration(self, node: yaml.Node, what: str) -> int | None:
        """Milliseconds, greater than zero."""
        hint = "write milliseconds (500) or a number with a unit: 500ms, 30s, 5m, 1h, 2d"
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT, _STR):
            self.error(node, f"{what} must be a duration, not {describe(node)}", hint)
            return None
        ms = parse_duration(str(node.value))
        if ms is None:
            self.error(node, f'{what} "{node.value}" is not a duration', hint)
            return None
        if ms <= 0:
            self.error(node, f"{what} must be longer than zero", hint)
            return None
        return ms

    def size(self, node: yaml.Node, what: str) -> int | None:
        """Bytes, zero or more."""
        hint = (
            "write bytes (65536) or a number with a unit: 512B, 64KiB, 1MiB (KiB: 1024, KB: 1000)"
        )
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT, _STR):
            self.error(node, f"{what} must be a size, not {describe(node)}", hint)
            return None
        size = parse_size(str(node.value))
        if size is None:
            self.error(node, f'{what} "{node.value}" is not a size', hint)
        return size

    def choice(self, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag != _NULL and str(node.value) in choices:
            return str(node.value)
        shown = f'"{node.value}"' if isinstance(node, yaml.ScalarNode) else describe(node)
        value = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        hint = did_you_mean(value, choices, one_of(choices)) if value else one_of(choices)
        self.error(node, f"{what} is {shown}, not one of {', '.join(choices)}", hint)
        return None

    def value(self, node: yaml.Node) -> JsonValue:
        """The plain JSON value of a node (timestamps and other tags stay strings)."""
        if isinstance(node, yaml.MappingNode):
            return {str(k.value): self.value(v) for k, v in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item) for item in node.value]
        if not isinstance(node, yaml.ScalarNode):
            return None
        if node.tag == _NULL:
            return None
        if node.tag == _BOOL:
            return _CONSTRUCTOR.construct_yaml_bool(node)
        if node.tag == _INT:
            return _int_value(node)
        if node.tag == _FLOAT:
            return _CONSTRUCTOR.construct_yaml_float(node)
        return str(node.value)

    def value_locations(
        self, node: yaml.Node, path: ValuePath = ()
    ) -> dict[ValuePath, tuple[Location, Location | None]]:
        """Where each part of ``value(node)`` is: its path -> (value, mapping key or None)."""
        found: dict[ValuePath, tuple[Location, Location | None]] = {path: (self.loc(node), None)}
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                inner = self.value_locations(value, (*path, str(key.value)))
                inner[(*path, str(key.value))] = (self.loc(value), self.loc(key))
                found.update(inner)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found.update(self.value_locations(item, (*path, index)))
        return found


def _is_plain(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT, _BOOL, _TIMESTAMP)


def _int_value(node: yaml.Node) -> int | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
        try:
            return _CONSTRUCTOR.construct_yaml_int(node)
        except ValueError:
            return None
    return None


def _range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"write a whole number from {minimum} to {maximum}"
    if minimum is not None:
        return f"write a whole number of at least {minimum}"
    if maximum is not None:
        return f"write a whole number of at most {maximum}"
    return "write a whole number"
