"""A policy file's text to YAML nodes and plain values, within limits, for any input.

libyaml parses (PyYAML's own parser where libyaml is missing) and this module composes
the parser's events into nodes itself, one loop and no recursion, so that it can count
as it goes: how deep collections nest, how many aliases there are and how many values
they repeat. A file over a limit is refused at the line where it crosses it, before
anything is built from it: an alias bomb costs the few lines it takes to write.

Only plain data is constructed (strings, numbers, booleans, dates, lists, mappings):
no tag makes Python objects. Every problem is an `Unreadable` with a 1-based line and
column; nothing else is raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

MAX_FILE_BYTES = 4 * 1024 * 1024  # a generated set of thousands of policies fits
MAX_DEPTH = 64  # collections within collections; a policy file needs about six
MAX_ALIASES = 100  # `*name` references in one file
MAX_REPEATED_VALUES = 10_000  # values that aliases repeat, counted as if written out
MAX_NUMBER_LENGTH = 100  # characters of an integer: no setting needs a longer one

# The characters YAML allows in a stream (YAML 1.1, as PyYAML and libyaml read it).
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_LIBYAML = getattr(yaml, "CSafeLoader", None)
_EVENT_SOURCE: type[Any] = _LIBYAML if _LIBYAML is not None else yaml.SafeLoader


class Unreadable(Exception):
    """The file cannot be read as YAML policy data; line and column 1-based, 0: the file."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


@dataclass
class Document:
    """A file's node tree, and each mapping's children by key, for locating problems."""

    root: yaml.Node | None
    # id(mapping node) → {key as written: (key node, value node)}; the last of equal keys
    children: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = field(default_factory=dict)


# ---------------------------------------------------------------- text


def read_text(path: Path) -> str:
    """The file as text: at most MAX_FILE_BYTES of UTF-8, without a byte order mark."""
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(
            0, 0, f"larger than {MAX_FILE_BYTES // 2**20} MiB: split it into several files"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, column = _byte_position(data, e.start)
        raise Unreadable(
            line, column, f"not UTF-8 text: byte 0x{data[e.start]:02x} (save the file as UTF-8)"
        ) from None
    check_characters(text)
    return text


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def check_characters(text: str) -> None:
    """Refuse the first character YAML does not allow (NUL, other control characters)."""
    found = _NOT_PRINTABLE.search(text)
    if found is None:
        return
    offset = found.start()
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    code = f"U+{ord(found.group()):04X}"
    what = "a NUL character" if code == "U+0000" else f"the control character {code}"
    raise Unreadable(line, column, f"{what} is not allowed in YAML (remove it)")


# ---------------------------------------------------------------- composing


def compose(text: str) -> Document:
    """The node tree of a single-document YAML text (root None when it holds nothing)."""
    check_characters(text)
    source = _EVENT_SOURCE(text)
    try:
        return _Composer(source).document()
    except yaml.MarkedYAMLError as e:
        raise _unreadable(e) from None
    except yaml.YAMLError as e:  # a reader error: the characters were checked above
        raise Unreadable(0, 0, f"invalid YAML: {e}") from None
    finally:
        source.dispose()


def _unreadable(error: yaml.MarkedYAMLError) -> Unreadable:
    mark = error.problem_mark or error.context_mark
    what = error.problem or error.context or "cannot parse"
    if "maximum nesting depth" in what:  # libyaml's own limit, met while reading ahead
        return _at(mark, f"nested more than {MAX_DEPTH} levels deep")
    if (error.context or "").startswith("while parsing a block") or "<block" in what:
        what += " (check the indentation)"
    if not isinstance(error, ConstructorError):  # the syntax is wrong, not a value
        what = f"invalid YAML: {what}"
    if mark is None:
        return Unreadable(0, 0, what)
    return Unreadable(mark.line + 1, mark.column + 1, what)


@dataclass
class _Open:
    """A collection whose end event has not come yet."""

    node: yaml.SequenceNode | yaml.MappingNode
    anchor: str | None
    size: int = 1  # values within it, aliases expanded, itself included
    key: yaml.Node | None = None  # a mapping's key waiting for its value


class _Composer:
    """Events to nodes, counting depth, aliases and the values aliases repeat."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.document_ = Document(None)
        self.anchors: dict[str, tuple[yaml.Node, int]] = {}  # name → (node, its size)
        self.aliases = 0
        self.repeated = 0

    def document(self) -> Document:
        source = self.source
        source.get_event()  # the stream's start
        if source.check_event(yaml.StreamEndEvent):
            return self.document_  # nothing but comments
        source.get_event()  # the document's start
        self.document_.root = self._compose()
        source.get_event()  # the document's end
        if not source.check_event(yaml.StreamEndEvent):
            mark = source.get_event().start_mark
            raise Unreadable(
                mark.line + 1, mark.column + 1, "expected one YAML document, found another (---)"
            )
        return self.document_

    def _compose(self) -> yaml.Node:
        stack: list[_Open] = []
        while True:
            event = self.source.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise _at(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
                stack.append(self._open(event))
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                node, size = self._close(stack.pop(), event)
            elif isinstance(event, yaml.AliasEvent):
                node, size = self._alias(event)
            else:
                node, size = self._scalar(event), 1
            if not stack:
                return node
            _add(stack[-1], node, size)

    def _open(self, event: Any) -> _Open:
        kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.source.resolve(kind, None, event.implicit)
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        return _Open(node, event.anchor)

    def _close(self, open_: _Open, event: Any) -> tuple[yaml.Node, int]:
        node = open_.node
        node.end_mark = event.end_mark
        if isinstance(node, yaml.MappingNode):
            self.document_.children[id(node)] = {str(k.value): (k, v) for k, v in node.value}
        self._anchor(open_.anchor, node, open_.size)
        return node, open_.size

    def _scalar(self, event: Any) -> yaml.Node:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.source.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        self._anchor(event.anchor, node, 1)
        return node

    def _anchor(self, anchor: str | None, node: yaml.Node, size: int) -> None:
        # Known once complete: an alias inside its own anchor's value is undefined, so
        # that the tree has no cycles. A later anchor of the same name replaces it.
        if anchor is not None:
            self.anchors[anchor] = (node, size)

    def _alias(self, event: Any) -> tuple[yaml.Node, int]:
        if event.anchor not in self.anchors:
            raise _at(
                event.start_mark,
                f"alias *{event.anchor} names no anchor &{event.anchor} completed before it",
            )
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise _at(event.start_mark, f"more than {MAX_ALIASES} aliases (*name) in one file")
        node, size = self.anchors[event.anchor]
        self.repeated += size
        if self.repeated > MAX_REPEATED_VALUES:
            raise _at(
                event.start_mark,
                f"aliases repeat more than {MAX_REPEATED_VALUES:,} values: "
                "write them out, or alias less",
            )
        return node, size


def _add(open_: _Open, node: yaml.Node, size: int) -> None:
    open_.size += size
    if isinstance(open_.node, yaml.SequenceNode):
        open_.node.value.append(node)
    elif open_.key is None:
        if not isinstance(node, yaml.ScalarNode):
            raise _at(node.start_mark, "a key must be a single value, not a list or mapping")
        open_.key = node
    else:
        open_.node.value.append((open_.key, node))
        open_.key = None


def _at(mark: Any, message: str) -> Unreadable:
    return Unreadable(mark.line + 1, mark.column + 1, message)


# ---------------------------------------------------------------- constructing


def construct(root: yaml.Node) -> Any:
    """Plain Python values of a node tree (aliases share their value)."""
    try:
        return _Constructor().construct_document(root)  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
    except yaml.MarkedYAMLError as e:
        raise _unreadable(e) from None


_KINDS = {
    "tag:yaml.org,2002:timestamp": "date or time",
    "tag:yaml.org,2002:int": "number",
    "tag:yaml.org,2002:float": "number",
}


class _Constructor(SafeConstructor):
    """YAML's safe types only; a value Python cannot represent is a problem at its node."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[no-untyped-call]
        except (ValueError, OverflowError, ArithmeticError, TypeError):
            kind = _KINDS.get(node.tag, "value")
            raise ConstructorError(
                None, None, f"not a valid {kind} (quote it to write text)", node.start_mark
            ) from None

    def construct_long_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_LENGTH:
            raise ConstructorError(
                None,
                None,
                f"a number longer than {MAX_NUMBER_LENGTH} characters (no setting takes one)",
                node.start_mark,
            )
        number: int = self.construct_yaml_int(node)
        return number

    def construct_unknown(self, node: yaml.Node) -> Any:
        raise ConstructorError(
            None,
            None,
            f"unsupported tag {_short_tag(node.tag)}: policy files hold plain values only "
            "(remove the tag)",
            node.start_mark,
        )


_Constructor.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:int": _Constructor.construct_long_int,
    None: _Constructor.construct_unknown,  # any tag not named here
}


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml") else tag


__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NUMBER_LENGTH",
    "MAX_REPEATED_VALUES",
    "Document",
    "Unreadable",
    "check_characters",
    "compose",
    "construct",
    "read_text",
]
