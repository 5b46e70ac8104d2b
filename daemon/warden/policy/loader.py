"""Read policy files into one PolicySet, or report every problem at file:line:column.

Each file is parsed once into YAML nodes, within limits (`parsing`: size, nesting,
aliases), and each mapping's children are indexed by key as it is parsed. `${VAR}` and
`${VAR:-default}` references in scalar values are filled in from the environment the
caller passes (this module never reads `os.environ`); `$${` writes a literal `${`. The
result is validated by the pydantic models, and every error's `loc` is walked back,
through the index, to the node it came from, so that a problem names the line and
column an admin wrote. Files then merge into one set, and references between them
(schedules, sinks, providers, what a provider can do) are checked, each at the line
that makes it. Every step is linear in the size of the files, errors included.

Whatever the bytes, the only exception is PolicyError.

Secrets: a value that came from the environment is never echoed in a problem; the
message shows the scalar as written (`"${CODER_TOKEN}"`) instead.
"""

from __future__ import annotations

import difflib
import gc
import hashlib
import json
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from warden.errors import WardenError
from warden.model import Verb
from warden.policy import parsing, placeholders
from warden.policy.durations import format_duration
from warden.policy.models import (
    NAME_PATTERN,
    BudgetPolicy,
    Digest,
    GlobalSettings,
    Policy,
    PolicyFile,
    Pricing,
    ProviderConfig,
    Schedule,
    Selector,
    SinkConfig,
    SpendFeed,
)
from warden.policy.schedule import parse_holidays, parse_window
from warden.policy.selector import can_match_provider
from warden.policy.typewalk import (
    annotation,
    constraints,
    field_of,
    is_model,
    is_union,
    item_type,
    tags_of,
    union_member,
    unwrap,
    written_names,
)

SUFFIXES = (".yaml", ".yml")
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy file; line and column are 1-based (0: the whole file)."""

    path: Path
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


MAX_PROBLEMS = 100  # listed in a PolicyError; the rest are counted in a last line


class PolicyError(WardenError):
    """The policy files have problems; `problems` lists every one of them.

    At most MAX_PROBLEMS are listed by load_policies, then one more line that says how
    many were left out and from which file on.
    """

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class PolicySet:
    """Every policy file merged: what the daemon runs with."""

    settings: GlobalSettings
    providers: dict[str, ProviderConfig]
    schedules: dict[str, Schedule]
    sinks: dict[str, SinkConfig]
    policies: list[Policy]
    pricing: dict[str, Pricing] = field(default_factory=dict)  # by provider name
    budgets: list[BudgetPolicy] = field(default_factory=list)
    spend_feeds: dict[str, SpendFeed] = field(default_factory=dict)
    digests: dict[str, Digest] = field(default_factory=dict)
    # where each was defined, by "policies.NAME", "providers.NAME", "schedules.NAME",
    # "sinks.NAME" (and "settings"): (file, line, column), 1-based
    sources: dict[str, tuple[Path, int, int]] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    # variables that were unset and stood in for by placeholders (lint mode only)
    unset: tuple[str, ...] = ()

    def where(self, key: str) -> str:
        """`file:line` of a definition, for messages: where("policies.idle-dev")."""
        path, line, _column = self.sources[key]
        return f"{path}:{line}"


# ---------------------------------------------------------------- files


def policy_files(paths: Sequence[Path]) -> list[Path]:
    """The files `paths` name: files as given; in directories, *.yaml and *.yml, sorted.

    Sub-directories and hidden files (editors' backups, `.#` locks) are not read.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if _is_policy_file(p)))
        elif path.is_file():
            found.append(path)
    return found


def _is_policy_file(path: Path) -> bool:
    return path.suffix in SUFFIXES and not path.name.startswith(".") and path.is_file()


def snapshot_mtimes(paths: Sequence[Path]) -> dict[Path, float]:
    """Modification times of every policy file: compare two snapshots to notice an edit.

    A file added to or removed from a directory changes the keys.
    """
    mtimes: dict[Path, float] = {}
    for path in policy_files(paths):
        try:
            mtimes[path] = path.stat().st_mtime
        except FileNotFoundError:  # removed between listing and stat
            continue
    return mtimes


def policy_fingerprint(policies: PolicySet) -> str:
    """A stable hash of what was loaded: equal fingerprints mean nothing changed.

    Secrets count (a new token must rebuild its provider) but only inside the hash.
    """
    content = {
        "settings": policies.settings,
        "providers": policies.providers,
        "schedules": policies.schedules,
        "sinks": policies.sinks,
        "policies": policies.policies,
        "spend_feeds": policies.spend_feeds,  # a new feed or token must reschedule its job
        "digests": policies.digests,
    }
    text = json.dumps(content, default=_canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)  # Decimal, URLs, enums


# ---------------------------------------------------------------- loading


def load_policies(
    paths: Sequence[Path],
    *,
    env: Mapping[str, str],
    capabilities: Mapping[str, frozenset[str]] | None = None,
    unset_ok: bool = False,
) -> PolicySet:
    """Load, validate and merge the policy files `paths` name (files or directories).

    `env` fills in `${VAR}` references. `capabilities` maps a provider type to what it
    can do ({"coder": {"stop", "start", "extend"}}); when given, a policy that needs
    what a provider it can match cannot do is a problem. With `unset_ok` (lint mode),
    a reference to an unset variable is no problem: a placeholder of the right shape
    stands in for it. Raises PolicyError listing every problem in every file.
    """
    problems: list[PolicyProblem] = []
    for path in paths:
        if not path.exists():
            problems.append(PolicyProblem(path, 0, 0, "no such file or directory"))
    files = policy_files(paths)
    if not files and not problems:
        problems.extend(
            PolicyProblem(path, 0, 0, "no policy files found (*.yaml, *.yml)")
            for path in paths or [Path()]
        )
    with _collection_paused():
        loaded = [_load_file(path, env, unset_ok) for path in files]
        for file in loaded:
            problems.extend(file.problems)
        policy_set, merge_problems = _merge(loaded, capabilities)
    problems.extend(merge_problems)
    if problems:
        order = {path: index for index, path in enumerate(files)}
        problems.sort(key=lambda p: (order.get(p.path, -1), p.line, p.column))
        raise PolicyError(_capped(problems))
    return policy_set


def _capped(problems: list[PolicyProblem]) -> list[PolicyProblem]:
    """The first MAX_PROBLEMS, and a line saying how many more there are."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    rest = len(problems) - MAX_PROBLEMS
    first_left_out = problems[MAX_PROBLEMS].path
    return [
        *problems[:MAX_PROBLEMS],
        PolicyProblem(first_left_out, 0, 0, f"… and {rest:,} more problems (fix these first)"),
    ]


@contextmanager
def _collection_paused() -> Iterator[None]:
    """No garbage collection while a set loads: it allocates many objects and frees
    none, and each full collection would walk them all again (composing a 1 MB file
    takes a tenth of the time without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _File:
    """One file on its way through loading."""

    path: Path
    text: str = ""
    root: yaml.Node | None = None
    # each mapping's children by key (parsing.Document.children)
    index: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = field(default_factory=dict)
    # id(node) → the scalar as written, for values with a ${...} reference
    written: dict[int, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)  # values taken from the environment
    failed: set[int] = field(default_factory=set)  # nodes already reported
    placeholders: set[int] = field(default_factory=set)  # nodes whose variable was unset
    unset: set[str] = field(default_factory=set)  # those variables' names
    model: PolicyFile | None = None
    problems: list[PolicyProblem] = field(default_factory=list)

    def problem(self, node: yaml.Node | None, message: str) -> None:
        line, column = _position(node)
        self.problems.append(PolicyProblem(self.path, line, column, message))

    def child(
        self, node: yaml.Node | None, part: str | int, *, key: bool = False
    ) -> yaml.Node | None:
        """A mapping's value (its key with `key`) or a list's item; None when missing."""
        if isinstance(node, yaml.MappingNode):
            pair = self.index.get(id(node), {}).get(str(part))
            return None if pair is None else pair[0 if key else 1]
        if (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            item: yaml.Node = node.value[part]
            return item
        return None

    def redact(self, message: str) -> str:
        """The last line of defence: no value from the environment in any message."""
        for value in self.secrets:
            message = message.replace(value, "[hidden]")
        return message


def _position(node: yaml.Node | None) -> tuple[int, int]:
    if node is None:
        return 1, 1
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def _load_file(path: Path, env: Mapping[str, str], unset_ok: bool) -> _File:
    file = _File(path)
    try:
        file.text = parsing.read_text(path)
        document = parsing.compose(file.text)
        file.root, file.index = document.root, document.children
        if file.root is None:
            file.model = PolicyFile()
            return file
        _inspect(file, env, unset_ok)
        data = parsing.construct(file.root)
    except parsing.Unreadable as e:
        file.problems.append(PolicyProblem(path, e.line, e.column, e.message))
        return file
    except OSError as e:
        file.problems.append(PolicyProblem(path, 0, 0, f"cannot read: {e.strerror}"))
        return file
    _check_schedule_nodes(file)
    _validate(file, data)
    return file


# ---------------------------------------------------------------- the node tree


def _walk(root: yaml.Node) -> Iterator[tuple[yaml.Node, Loc]]:
    """Every node once (aliases share nodes), with the path to it."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node, loc
        if isinstance(node, yaml.MappingNode):
            stack.extend((value, (*loc, str(key.value))) for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node.value))


def _dotted(loc: Loc) -> str:
    """("policies", 0, "when", "idle_for") → "policies[0].when.idle_for"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _with_loc(loc: Loc, message: str) -> str:
    dotted = _dotted(loc)
    return f"{dotted}: {message}" if dotted else message


def _inspect(file: _File, env: Mapping[str, str], unset_ok: bool) -> None:
    """One walk over the tree: duplicate keys, and ${...} references filled in."""
    assert file.root is not None
    for node, loc in _walk(file.root):
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(file, node, loc)
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "$" in node.value:
            _substitute_scalar(file, node, loc, env, unset_ok)


def _check_duplicate_keys(file: _File, node: yaml.MappingNode, loc: Loc) -> None:
    if len(file.index.get(id(node), ())) == len(node.value):
        return  # as many keys as distinct ones: no duplicate
    first: dict[tuple[str, str], yaml.Node] = {}
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        earlier = first.setdefault((key.tag, key.value), key)
        if earlier is not key:
            line, _ = _position(earlier)
            file.problem(
                key, _with_loc((*loc, key.value), f"duplicate key (first defined at line {line})")
            )


class _Located(NamedTuple):
    node: yaml.Node | None
    loc: Loc  # as the file has it: no index where a scalar stood for a list of one


def _locate(file: _File, loc: Loc, *, key: bool = False) -> _Located:
    """The node a loc points at (its key with `key`); the nearest parent when missing."""
    node, written, lost = file.root, list[str | int](), False
    for index, part in enumerate(loc):
        child = None if lost else file.child(node, part, key=key and index == len(loc) - 1)
        if child is not None:
            node = child
        elif isinstance(part, int) and not lost and not isinstance(node, yaml.SequenceNode):
            continue  # one value written where a list of one is meant: no index in the file
        else:
            lost = True  # missing from the file: stay at the parent
        written.append(part)
    return _Located(node, tuple(written))


# ---------------------------------------------------------------- ${VAR} substitution

# A default ends at the first `}` and holds no `${`: matching stops at either, so that a
# scalar of many unclosed references is still read in one pass.
_REFERENCE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>(?:[^}$]|\$(?!\{))*))?\}"
)
_SHOWN_REFERENCE = 60  # characters of a malformed reference quoted in its problem
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class Substitution:
    text: str
    used: bool = False  # a reference was replaced (not just a $${ escape)
    missing: list[tuple[int, str]] = field(default_factory=list)  # (offset, name)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (offset, text)
    values: list[str] = field(default_factory=list)  # what the environment gave


def substitute(text: str, env: Mapping[str, str]) -> Substitution:
    """Fill in ${VAR} and ${VAR:-default} (the default also when VAR is empty); $${ is ${."""
    out: list[str] = []
    result = Substitution(text)
    position = 0
    while (dollar := text.find("$", position)) >= 0:
        out.append(text[position:dollar])
        position = _one_reference(text, dollar, env, out, result)
    out.append(text[position:])
    result.text = "".join(out)
    return result


def _one_reference(
    text: str, dollar: int, env: Mapping[str, str], out: list[str], result: Substitution
) -> int:
    """Handle the `$` at `dollar`; return where scanning goes on."""
    if text.startswith("$${", dollar):
        out.append("${")
        return dollar + 3
    if not text.startswith("${", dollar):
        out.append("$")
        return dollar + 1
    match = _REFERENCE.match(text, dollar)
    if match is None:
        shown = text[dollar : dollar + _SHOWN_REFERENCE]
        closing = shown.find("}")
        result.malformed.append((dollar, shown[: closing + 1] if closing >= 0 else shown))
        out.append(text[dollar : dollar + 2])
        return dollar + 2
    value = env.get(match["name"])
    if value:
        result.values.append(value)
    if match["default"] is not None and not value:
        value = match["default"]
    if value is None:
        result.missing.append((dollar, match["name"]))
        value = ""
    out.append(value)
    result.used = True
    return match.end()


_SECRET_LENGTH = 4  # shorter values would blank words in messages, and are no secrets


def _substitute_scalar(
    file: _File, node: yaml.ScalarNode, loc: Loc, env: Mapping[str, str], unset_ok: bool
) -> None:
    """Fill in one scalar's references; in lint mode an unset one makes it a placeholder."""
    result = substitute(node.value, env)
    file.secrets.update(v for v in result.values if len(v) >= _SECRET_LENGTH)
    problems = [(offset, _malformed(reference)) for offset, reference in result.malformed]
    if result.missing and unset_ok:
        file.placeholders.add(id(node))
        file.unset.update(name for _offset, name in result.missing)
        result.text = placeholders.placeholder(file.root, loc, file.child)
    else:
        first = {name: offset for offset, name in reversed(result.missing)}
        problems += [(o, f"environment variable {n} is not set") for n, o in first.items()]
    file.problems.extend(_problems_in_scalar(file, node, loc, sorted(problems)))
    if problems:
        file.failed.add(id(node))
    if result.used:
        file.written[id(node)] = node.value
    node.value = result.text


def _malformed(reference: str) -> str:
    return (
        f"malformed reference {json.dumps(reference)} "
        "(expected ${NAME} or ${NAME:-default}; $${ writes a literal ${)"
    )


def _problems_in_scalar(
    file: _File, node: yaml.Node, loc: Loc, problems: list[tuple[int, str]]
) -> Iterator[PolicyProblem]:
    """Each problem at its reference where the source shows it, else at the scalar.

    `problems` are (offset in the value, message) in offset order: each reference is
    looked for after the one before, so that a scalar is searched once, however many.
    """
    start, end = node.start_mark.index, node.end_mark.index
    cursor = start
    for offset, message in problems:
        needle = node.value[offset : offset + _SHOWN_REFERENCE]
        needle = needle[: needle.find("}") + 1] if "}" in needle else needle[:2]
        found = file.text.find(needle, cursor, end) if needle else -1
        if found < 0:
            line, column = _position(node)
        else:
            cursor = found + len(needle)
            line, column = _position_in(file.text, node, found)
        yield PolicyProblem(file.path, line, column, _with_loc(loc, message))


def _position_in(text: str, node: yaml.Node, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset` in `text`, counted from the node's start."""
    start = node.start_mark.index
    breaks = text.count("\n", start, offset)
    if not breaks:
        return node.start_mark.line + 1, node.start_mark.column + offset - start + 1
    return node.start_mark.line + breaks + 1, offset - text.rfind("\n", start, offset)


# ---------------------------------------------------------------- validation


def _validate(file: _File, data: Any) -> None:
    try:
        file.model = PolicyFile.model_validate(data)
    except ValidationError as e:
        for error in e.errors(include_url=False):
            _report(file, error)


def _report(file: _File, error: ErrorDetails) -> None:
    walked = _walk_type(error["loc"])
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc, message = _union_tag_message(file, walked, error)
        located = _locate(file, loc)
    elif kind == "invalid_key":  # the loc ends in the key itself: point at it
        located = _locate(file, walked.loc, key=True)
        loc = located.loc[:-1]
        message = f"expected a key of text, got {_shown(file, located.node, error.get('input'))}"
    else:
        located = _locate(file, walked.loc, key=kind == "extra_forbidden" or walked.key)
        message = _message(file, walked, error, located.node)
        loc = located.loc
    if located.node is not None and id(located.node) in file.failed:
        return  # its ${...} reference was reported already
    file.problem(located.node, _with_loc(loc, message))


class _Walked(NamedTuple):
    loc: Loc  # pydantic's loc without union tags and "[key]"
    key: bool  # the error is about a mapping key, not its value
    parent: type[BaseModel] | None  # the model the last part is a field of
    target: Any  # the type the loc ends at (None when unknown)
    constraints: list[Any]  # bounds on what the loc ends at (annotated_types' Le, ...)


def _walk_type(loc: Loc) -> _Walked:
    """Follow pydantic's loc through the model types to strip what the admin did not write."""
    target: Any = PolicyFile
    parent: type[BaseModel] | None = None
    written: list[str | int] = []
    key = False
    bounds: list[Any] = []
    for part in loc:
        target, discriminator = unwrap(target)
        if part == "[key]":
            key = True
        elif is_union(target):
            target = union_member(target, part) if discriminator else None
        elif is_model(target):
            parent = target
            found = field_of(target, part)
            target = annotation(found[1]) if found is not None else None
            bounds = list(found[1].metadata) if found is not None else []
            written.append(part)
        else:
            # a mapping's key is text in the file, whatever YAML read it as (1, true)
            written.append(str(part) if typing.get_origin(target) is dict else part)
            target = item_type(target)
            bounds = constraints(target)
    return _Walked(tuple(written), key, parent, unwrap(target)[0], bounds)


def _union_tag_message(file: _File, walked: _Walked, error: ErrorDetails) -> tuple[Loc, str]:
    discriminator = str((error.get("ctx") or {}).get("discriminator", "type")).strip("'")
    tags = [tag for member in typing.get_args(walked.target) for tag in tags_of(member)]
    expected = f"expected one of: {', '.join(tags)}"
    loc = (*walked.loc, discriminator)
    if error["type"] == "union_tag_not_found":
        return loc, f"missing ({expected})"
    node = _locate(file, loc).node
    tag = (error.get("ctx") or {}).get("tag")
    return loc, f"{expected}; got {_shown(file, node, tag)}"


_PLAIN = {
    "missing": "missing (required)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "dict_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "decimal_type": "expected a number",
    "decimal_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "url_type": "expected a URL such as https://example.com",
}
_BOUNDS = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
_NAME_RULE = (
    'expected a name of lower-case letters, digits, ".", "_" and "-" '
    "that starts with a letter or digit (at most 63)"
)
_SENTINEL = "\x00value\x00"


def _message(file: _File, walked: _Walked, error: ErrorDetails, node: yaml.Node | None) -> str:
    """What was expected, in the admin's terms; the value echoed only where it is safe."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(walked)
    if kind == "missing":
        return _PLAIN[kind]
    if kind in _PLAIN:
        return f"{_PLAIN[kind]}, got {_shown(file, node, value)}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return f"{_NAME_RULE}, got {_shown(file, node, value)}"
    if kind in _BOUND_KINDS:
        return f"expected {_bound(walked, ctx)}, got {_shown(file, node, value)}"
    message = _reworded(error["msg"])
    if isinstance(value, str) and repr(value) in message:
        message = message.replace(repr(value), _SENTINEL)
    message = file.redact(message)
    if _SENTINEL in message:
        return message.replace(_SENTINEL, _shown(file, node, value))
    if kind != "value_error" and _is_scalar(value):
        return f"{message}, got {_shown(file, node, value)}"
    return message


_BOUND_KINDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _reworded(message: str) -> str:
    """pydantic's message in the words of the others: "expected ..."."""
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    return message


def _unknown_key(walked: _Walked) -> str:
    """An unknown key, with the nearest known one when it looks like a typo."""
    if walked.parent is None:
        return "unknown key"
    known = written_names(walked.parent)
    typed = str(walked.loc[-1]) if walked.loc else ""
    close = difflib.get_close_matches(typed, known, n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"unknown key{hint} (expected one of: {', '.join(known)})"


def _bound(walked: _Walked, ctx: dict[str, Any]) -> str:
    """ "at most 1d": the bound as an admin writes it, not datetime.timedelta(days=1).

    pydantic's ctx holds the bound's repr; the field's own constraint holds the bound.
    """
    which = next(name for name in _BOUNDS if name in ctx)
    value = next((getattr(c, which) for c in walked.constraints if hasattr(c, which)), None)
    if isinstance(value, timedelta):
        shown = format_duration(value)
    elif isinstance(value, Decimal | int | float):
        shown = format(value, "f") if isinstance(value, Decimal) else str(value)
    else:
        shown = str(ctx[which])
    return f"{_BOUNDS[which]} {shown}"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | date)


_YAML_BOOLEANS = {"true", "false"}
_SHOWN_TEXT = 80  # characters of a value quoted in a problem
_KINDS_OF: dict[type, str] = {
    dict: "a mapping",
    list: "a list",
    tuple: "a list",
    set: "a set",
    bytes: "binary data",
}


def _shown(file: _File, node: yaml.Node | None, value: Any) -> str:
    """A value for a message: as written when it came from the environment, never its value."""
    if node is not None and id(node) in file.written:
        return f"{json.dumps(file.written[id(node)])} (its value is not shown)"
    if isinstance(value, bool):
        shown = "true" if value else "false"
        if (
            isinstance(node, yaml.ScalarNode)
            and not node.style  # plain, not quoted
            and node.value.lower() not in _YAML_BOOLEANS
        ):
            return f"{shown} (YAML reads {node.value} as {shown}: quote it)"
        return shown
    if value is None:
        return "null"
    if isinstance(value, str):
        cut = value if len(value) <= _SHOWN_TEXT else value[:_SHOWN_TEXT] + "…"
        return json.dumps(cut, ensure_ascii=False)
    if isinstance(value, date):
        return value.isoformat()
    if type(value) in _KINDS_OF:
        return _KINDS_OF[type(value)]
    return str(value)


def _check_schedule_nodes(file: _File) -> None:
    """Holiday calendars and `open` specs, each at its own line, whatever else is wrong.

    The models check both too, but stop at the first bad spec of a list and cannot
    consult the holiday library; here every one is reported where it was written.
    """
    schedules = file.child(file.root, "schedules")
    if not isinstance(schedules, yaml.MappingNode):
        return
    for name_node, schedule in schedules.value:
        base = ("schedules", str(name_node.value))
        holidays = file.child(schedule, "holidays")
        if _is_text(holidays):
            _check_text(file, holidays, (*base, "holidays"), parse_holidays, _HOLIDAYS_RULE)
        specs = file.child(schedule, "open")
        if not isinstance(specs, yaml.SequenceNode):
            continue  # the models say what `open` should be
        bad = [
            _check_text(file, item, (*base, "open", index), parse_window, _WINDOW_RULE)
            for index, item in enumerate(specs.value)
            if _is_text(item)
        ]
        if any(bad):
            file.failed.add(id(specs))  # the models' error for the list would repeat it


_HOLIDAYS_RULE = "expected a holiday calendar such as DE or DE-BY"
_WINDOW_RULE = 'expected days and hours such as "Mon-Fri 08:00-19:00"'


def _is_text(node: yaml.Node | None) -> typing.TypeGuard[yaml.ScalarNode]:
    return isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG


def _check_text(
    file: _File, node: yaml.ScalarNode, loc: Loc, parse: Callable[[str], object], rule: str
) -> bool:
    """Report what `parse` finds wrong with a scalar; True when it found something."""
    try:
        parse(node.value)
    except ValueError as e:
        file.failed.add(id(node))
        # the parser quotes parts of the value: from the environment, show none of it
        substituted = id(node) in file.written
        message = f"{rule}, got {_shown(file, node, node.value)}" if substituted else str(e)
        file.problem(node, _with_loc(loc, message))
        return True
    return False


# ---------------------------------------------------------------- merging and references


_KINDS = {
    "providers": "provider",
    "schedules": "schedule",
    "sinks": "sink",
    "pricing": "pricing",
    "spend_feeds": "spend feed",
    "digests": "digest",
}


@dataclass
class _Merged:
    settings: GlobalSettings | None = None
    sections: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {kind: {} for kind in _KINDS}
    )
    policies: list[Policy] = field(default_factory=list)
    placed: list[tuple[_File, int, Policy]] = field(default_factory=list)
    budgets: list[BudgetPolicy] = field(default_factory=list)
    placed_budgets: list[tuple[_File, int, BudgetPolicy]] = field(default_factory=list)
    sources: dict[str, tuple[Path, int, int]] = field(default_factory=dict)
    unchecked: dict[str, set[str]] = field(default_factory=lambda: {kind: set() for kind in _KINDS})
    _known: dict[str, str] = field(default_factory=dict)

    def known(self, kind: str) -> str:
        """The names of one kind every file defines, for problems (once per kind)."""
        if kind not in self._known:
            names = sorted(self.sections[kind])
            shown = ", ".join(names[:_KNOWN_SHOWN]) + (", …" if len(names) > _KNOWN_SHOWN else "")
            self._known[kind] = f"expected one of: {shown}" if names else f"no {kind} defined"
        return self._known[kind]


_KNOWN_SHOWN = 20  # names listed after "expected one of:"


def _merge(
    files: Sequence[_File], capabilities: Mapping[str, frozenset[str]] | None
) -> tuple[PolicySet, list[PolicyProblem]]:
    merged = _Merged()
    problems: list[PolicyProblem] = []
    for file in files:
        if file.model is None:
            _note_unchecked_names(file, merged)
        else:
            problems.extend(_merge_file(file, file.model, merged))
    for file, index, policy in merged.placed:
        problems.extend(_check_references(file, index, policy, merged))
        if capabilities is not None:
            problems.extend(_check_capabilities(file, index, policy, merged, capabilities))
    for file, index, budget in merged.placed_budgets:
        problems.extend(_check_budget(file, index, budget, merged, capabilities))
    for file in files:
        if file.model is not None:
            problems.extend(_check_feeds(file, file.model, merged))
    policy_set = PolicySet(
        settings=merged.settings or GlobalSettings(),
        providers=merged.sections["providers"],
        schedules=merged.sections["schedules"],
        sinks=merged.sections["sinks"],
        pricing=merged.sections["pricing"],
        policies=merged.policies,
        budgets=merged.budgets,
        spend_feeds=merged.sections["spend_feeds"],
        digests=merged.sections["digests"],
        sources=merged.sources,
        files=tuple(file.path for file in files),
        unset=tuple(sorted({name for file in files for name in file.unset})),
    )
    return policy_set, problems


def _note_unchecked_names(file: _File, merged: _Merged) -> None:
    """Names a file with problems defines: references to them are not reported again."""
    if not isinstance(file.root, yaml.MappingNode):
        return
    for key, value in file.root.value:
        if key.value in _KINDS and isinstance(value, yaml.MappingNode):
            merged.unchecked[key.value].update(str(k.value) for k, _ in value.value)


def _merge_file(file: _File, model: PolicyFile, merged: _Merged) -> list[PolicyProblem]:
    problems: list[PolicyProblem] = []
    if model.settings is not None:
        node = _locate(file, ("settings",), key=True).node
        if merged.settings is None:
            merged.settings = model.settings
            merged.sources["settings"] = _source(file, node)
        else:
            first = _first(merged.sources["settings"])
            problems.append(
                _at(file, node, f"settings are already set at {first}: only one file may set them")
            )
    for kind, singular in _KINDS.items():
        defined: dict[str, Any] = getattr(model, kind)
        for name, config in defined.items():
            node = _locate(file, (kind, name), key=True).node
            key = f"{kind}.{name}"
            if key in merged.sources:
                first = _first(merged.sources[key])
                problems.append(
                    _at(
                        file, node, f"duplicate {singular} name '{name}' (first defined at {first})"
                    )
                )
            else:
                merged.sections[kind][name] = config
                merged.sources[key] = _source(file, node)
    for index, policy in enumerate(model.policies):
        if _placed_once(file, "policies", index, policy.name, merged, problems):
            merged.policies.append(policy)
            merged.placed.append((file, index, policy))
    for index, budget in enumerate(model.budgets):
        if _placed_once(file, "budgets", index, budget.name, merged, problems):
            merged.budgets.append(budget)
            merged.placed_budgets.append((file, index, budget))
    return problems


def _placed_once(
    file: _File, section: str, index: int, name: str, merged: _Merged, problems: list[PolicyProblem]
) -> bool:
    """Record where a policy or budget is defined; False (and a problem) for a taken name.

    Policies and budgets share one namespace: decisions, actions and events name either.
    """
    key = f"policies.{name}"
    if key in merged.sources:
        node = _locate(file, (section, index, "name")).node
        first = _first(merged.sources[key])
        problems.append(
            _at(file, node, f"duplicate policy name '{name}' (first defined at {first})")
        )
        return False
    merged.sources[key] = _source(file, _locate(file, (section, index)).node)
    return True


def _source(file: _File, node: yaml.Node | None) -> tuple[Path, int, int]:
    return (file.path, *_position(node))


def _first(source: tuple[Path, int, int]) -> str:
    return f"{source[0]}:{source[1]}"


def _at(file: _File, node: yaml.Node | None, message: str) -> PolicyProblem:
    return PolicyProblem(file.path, *_position(node), message)


def _check_references(
    file: _File, index: int, policy: Policy, merged: _Merged
) -> Iterator[PolicyProblem]:
    """A policy's schedule, sinks and providers must be defined (in any file)."""
    base: Loc = ("policies", index)
    wanted: list[tuple[str, Loc, str]] = []
    if policy.schedule is not None:
        wanted.append(("schedules", (*base, "schedule"), policy.schedule))
    wanted.extend(("sinks", (*base, "notify", i), sink) for i, sink in enumerate(policy.notify))
    for selector_loc, selector in [((*base, "match"), policy.match)] + [
        ((*base, "exclude", i), ex) for i, ex in enumerate(policy.exclude)
    ]:
        wanted.extend(_selector_providers(selector_loc, selector))
    yield from _unknown_names(file, wanted, merged)


def _check_feeds(file: _File, model: PolicyFile, merged: _Merged) -> Iterator[PolicyProblem]:
    """Each spend feed's provider must be defined (in any file): its records count there;
    and each digest's sinks and providers."""
    wanted: list[tuple[str, Loc, str]] = [
        ("providers", ("spend_feeds", name, "provider"), feed.provider)
        for name, feed in model.spend_feeds.items()
    ]
    for name, digest in model.digests.items():
        base: Loc = ("digests", name)
        wanted.extend(("sinks", (*base, "notify", i), s) for i, s in enumerate(digest.notify))
        wanted.extend(_selector_providers((*base, "match"), digest.match))
    yield from _unknown_names(file, wanted, merged)


def _selector_providers(loc: Loc, selector: Selector) -> list[tuple[str, Loc, str]]:
    return [
        ("providers", (*loc, "provider", i), name) for i, name in enumerate(selector.provider or [])
    ]


def _unknown_names(
    file: _File, wanted: Sequence[tuple[str, Loc, str]], merged: _Merged
) -> Iterator[PolicyProblem]:
    """A problem for each (kind, where, name) that no file defines."""
    for kind, loc, name in wanted:
        defined = merged.sections[kind]
        if name in defined or name in merged.unchecked[kind]:
            continue
        located = _locate(file, loc)
        if located.node is not None and id(located.node) in file.placeholders:
            continue  # lint mode: a variable that is unset here names it
        message = (
            f"unknown {_KINDS[kind]} {_shown(file, located.node, name)} ({merged.known(kind)})"
        )
        yield _at(file, located.node, _with_loc(located.loc, file.redact(message)))


def _check_capabilities(
    file: _File,
    index: int,
    policy: Policy,
    merged: _Merged,
    capabilities: Mapping[str, frozenset[str]],
) -> Iterator[PolicyProblem]:
    """Every provider a policy can match must be able to do what the policy does."""
    needs = _needs(policy)
    for name, config in merged.sections["providers"].items():
        able = capabilities.get(config.type)
        if able is None or not can_match_provider(policy, name):
            continue  # a type without a known adapter is the registry's to report
        for capability, field_name in needs:
            if capability not in able:
                node = _locate(file, ("policies", index, field_name), key=True).node
                yield _at(file, node, f'provider "{name}" ({config.type}) cannot {capability}')


# ---------------------------------------------------------------- budgets

# What a budget's action needs of the providers it acts on: a stop is undone at the
# reset, so it needs start as well.
_BUDGET_NEEDS = {
    "stop": ("stop", "start"),
    "kill_switch": ("kill_switch",),
    "throttle": ("set_limits",),
}


def _check_budget(
    file: _File,
    index: int,
    budget: BudgetPolicy,
    merged: _Merged,
    capabilities: Mapping[str, frozenset[str]] | None,
) -> Iterator[PolicyProblem]:
    """Sinks, providers, threshold order, capabilities and prices of one budget."""
    base: Loc = ("budgets", index)
    wanted = _selector_providers((*base, "match"), budget.match)
    for i, ex in enumerate(budget.exclude):
        wanted.extend(_selector_providers((*base, "exclude", i), ex))
    for t, threshold in enumerate(budget.thresholds):
        where: Loc = (*base, "thresholds", t)
        wanted.extend(("sinks", (*where, "notify", i), s) for i, s in enumerate(threshold.notify))
        if threshold.target is not None:
            wanted.extend(_selector_providers((*where, "target"), threshold.target))
    yield from _unknown_names(file, wanted, merged)
    yield from _thresholds_in_order(file, base, budget)
    yield from _budget_prices(file, base, budget, merged, capabilities or {})
    if capabilities is not None:
        yield from _budget_capabilities(file, base, budget, merged, capabilities)


def _thresholds_in_order(file: _File, base: Loc, budget: BudgetPolicy) -> Iterator[PolicyProblem]:
    for t in range(1, len(budget.thresholds)):
        before, this = budget.thresholds[t - 1].at, budget.thresholds[t].at
        if this < before:
            loc = (*base, "thresholds", t, "at")
            message = (
                f"thresholds out of order: {this}% comes after {before}% "
                "(list them from the lowest share up)"
            )
            yield _at(file, _locate(file, loc).node, _with_loc(loc, message))


def _budget_prices(
    file: _File,
    base: Loc,
    budget: BudgetPolicy,
    merged: _Merged,
    capabilities: Mapping[str, frozenset[str]],
) -> Iterator[PolicyProblem]:
    """Each provider whose spend a budget counts needs a price or a spend feed (a type
    whose spend only ever arrives by feed, pushed or pulled, needs neither here)."""
    fed = {
        getattr(feed, "provider", None) for feed in merged.sections.get("spend_feeds", {}).values()
    }
    for name, config in merged.sections["providers"].items():
        if not can_match_provider(budget, name):
            continue
        by_feed = "spend_feed" in capabilities.get(config.type, frozenset())
        if name not in merged.sections["pricing"] and name not in fed and not by_feed:
            loc = (*base, "budget")
            message = (
                f'budget counts provider "{name}", which has no pricing entry and no spend '
                "feed: its spend would be missing"
            )
            yield _at(file, _locate(file, loc, key=True).node, _with_loc(loc, message))


def _budget_capabilities(
    file: _File,
    base: Loc,
    budget: BudgetPolicy,
    merged: _Merged,
    capabilities: Mapping[str, frozenset[str]],
) -> Iterator[PolicyProblem]:
    for t, threshold in enumerate(budget.thresholds):
        needs = _BUDGET_NEEDS.get(threshold.do, ())
        scope = budget if threshold.target is None else _Target(threshold.target)
        for name, config in merged.sections["providers"].items():
            able = capabilities.get(config.type)
            if able is None or not can_match_provider(scope, name):
                continue
            for capability in needs:
                if capability not in able:
                    loc = (*base, "thresholds", t, "do")
                    message = f'provider "{name}" ({config.type}) cannot {capability}'
                    yield _at(file, _locate(file, loc).node, _with_loc(loc, message))


@dataclass(frozen=True)
class _Target:
    """A threshold's target as a scope: the selector, nothing excluded."""

    match: Selector
    exclude: tuple[Selector, ...] = ()


def _needs(policy: Policy) -> list[tuple[str, str]]:
    """(capability, the key that asks for it) for what a policy may do to a workspace."""
    if policy.lifecycle is not None:  # writes the platform's settings, nothing else
        return [("set_lifecycle", "lifecycle")]
    if policy.schedule is not None:  # stop at closing, start again at opening
        return [("stop", "schedule"), ("start", "schedule")] if policy.do is Verb.STOP else []
    needs: list[tuple[str, str]] = []
    if policy.when is not None and policy.when.metric is not None:
        needs.append(("utilisation", "when"))
    if policy.extend is not None:
        needs.append(("extend", "extend"))
    if policy.do is Verb.STOP:
        needs.append(("stop", "do" if "do" in policy.model_fields_set else "when"))
    return needs


__all__ = [
    "PolicyError",
    "PolicyProblem",
    "PolicySet",
    "Substitution",
    "load_policies",
    "policy_files",
    "policy_fingerprint",
    "snapshot_mtimes",
    "substitute",
]
