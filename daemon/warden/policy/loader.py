"""Read policy files into one PolicySet, or report every problem at file:line:column.

Each file is parsed once into YAML nodes. `${VAR}` and `${VAR:-default}` references in
scalar values are filled in from the environment the caller passes (this module never
reads `os.environ`); `$${` writes a literal `${`. The result is validated by the
pydantic models, and every error's `loc` is walked back to the node it came from, so
that a problem names the line and column an admin wrote. Files then merge into one
set, and references between them (schedules, sinks, providers, what a provider can do)
are checked, each at the line that makes it.

Secrets: a value that came from the environment is never echoed in a problem; the
message shows the scalar as written (`"${CODER_TOKEN}"`) instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from warden.errors import WardenError
from warden.model import Verb
from warden.policy.models import (
    NAME_PATTERN,
    BudgetPolicy,
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


class PolicyError(WardenError):
    """The policy files have problems; `problems` lists every one of them."""

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
    # where each was defined, by "policies.NAME", "providers.NAME", "schedules.NAME",
    # "sinks.NAME" (and "settings"): (file, line, column), 1-based
    sources: dict[str, tuple[Path, int, int]] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

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
) -> PolicySet:
    """Load, validate and merge the policy files `paths` name (files or directories).

    `env` fills in `${VAR}` references. `capabilities` maps a provider type to what it
    can do ({"coder": {"stop", "start", "extend"}}); when given, a policy that needs
    what a provider it can match cannot do is a problem. Raises PolicyError listing
    every problem in every file.
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
    loaded = [_load_file(path, env) for path in files]
    for file in loaded:
        problems.extend(file.problems)
    policy_set, merge_problems = _merge(loaded, capabilities)
    problems.extend(merge_problems)
    if problems:
        order = {path: index for index, path in enumerate(files)}
        problems.sort(key=lambda p: (order.get(p.path, -1), p.line, p.column))
        raise PolicyError(problems)
    return policy_set


@dataclass
class _File:
    """One file on its way through loading."""

    path: Path
    text: str = ""
    root: yaml.Node | None = None
    # id(node) → (the scalar as written, its value after ${...} substitution)
    written: dict[int, tuple[str, str]] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)  # nodes already reported
    model: PolicyFile | None = None
    problems: list[PolicyProblem] = field(default_factory=list)

    def problem(self, node: yaml.Node | None, message: str) -> None:
        line, column = _position(node)
        self.problems.append(PolicyProblem(self.path, line, column, message))

    def redact(self, message: str) -> str:
        """The last line of defence: no value from the environment in any message."""
        for _written, value in self.written.values():
            if len(value) >= 4:  # shorter ones would blank words, and are no secrets
                message = message.replace(value, "[hidden]")
        return message


def _position(node: yaml.Node | None) -> tuple[int, int]:
    if node is None:
        return 1, 1
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def _load_file(path: Path, env: Mapping[str, str]) -> _File:
    file = _File(path)
    try:
        file.text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        file.problems.append(PolicyProblem(path, 0, 0, "not UTF-8 text"))
        return file
    except OSError as e:
        file.problems.append(PolicyProblem(path, 0, 0, f"cannot read: {e.strerror}"))
        return file
    loader = yaml.SafeLoader(file.text)
    try:
        _parse(file, loader, env)
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
    return file


def _parse(file: _File, loader: yaml.SafeLoader, env: Mapping[str, str]) -> None:
    try:
        file.root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        _yaml_problem(file, e)
        return
    except yaml.YAMLError as e:
        file.problems.append(PolicyProblem(file.path, 0, 0, f"invalid YAML: {e}"))
        return
    if file.root is None:
        file.model = PolicyFile()
        return
    _check_duplicate_keys(file)
    _substitute_all(file, env)
    try:
        data = loader.construct_document(file.root)  # type: ignore[no-untyped-call]  # as above
    except yaml.MarkedYAMLError as e:
        _yaml_problem(file, e)
        return
    _check_schedule_nodes(file)
    _validate(file, data)


def _yaml_problem(file: _File, error: yaml.MarkedYAMLError) -> None:
    mark = error.problem_mark or error.context_mark
    what = error.problem or error.context or "cannot parse"
    if "<block" in what:  # PyYAML's words for a line indented unlike its neighbours
        what += " (check the indentation)"
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    file.problems.append(PolicyProblem(file.path, line, column, f"invalid YAML: {what}"))


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


def _check_duplicate_keys(file: _File) -> None:
    assert file.root is not None
    for node, loc in _walk(file.root):
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, _value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            earlier = first.setdefault((key.tag, key.value), key)
            if earlier is not key:
                line, _ = _position(earlier)
                file.problem(
                    key,
                    _with_loc((*loc, key.value), f"duplicate key (first defined at line {line})"),
                )


class _Located(NamedTuple):
    node: yaml.Node | None
    loc: Loc  # as the file has it: no index where a scalar stood for a list of one


def _locate(root: yaml.Node | None, loc: Loc, *, key: bool = False) -> _Located:
    """The node a loc points at (its key with `key`); the nearest parent when missing."""
    node, written, lost = root, list[str | int](), False
    for index, part in enumerate(loc):
        child = None if lost else _child(node, part, key=key and index == len(loc) - 1)
        if child is not None:
            node = child
        elif isinstance(part, int) and not lost and not isinstance(node, yaml.SequenceNode):
            continue  # one value written where a list of one is meant: no index in the file
        else:
            lost = True  # missing from the file: stay at the parent
        written.append(part)
    return _Located(node, tuple(written))


def _child(node: yaml.Node | None, part: str | int, *, key: bool) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        pairs = [(k, v) for k, v in node.value if str(k.value) == str(part)]
        if not pairs:
            return None
        k, v = pairs[-1]  # the last one wins, as in construction
        found: yaml.Node = k if key else v
        return found
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item
    return None


# ---------------------------------------------------------------- ${VAR} substitution

_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class Substitution:
    text: str
    used: bool = False  # a reference was replaced (not just a $${ escape)
    missing: list[tuple[int, str]] = field(default_factory=list)  # (offset, name)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (offset, text)


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
    if match is None or "${" in (match["default"] or ""):
        closing = text.find("}", dollar)
        shown = text[dollar : closing + 1] if closing >= 0 else text[dollar:]
        result.malformed.append((dollar, shown[:60]))
        out.append(text[dollar : dollar + 2])
        return dollar + 2
    value = env.get(match["name"])
    if match["default"] is not None and not value:
        value = match["default"]
    if value is None:
        result.missing.append((dollar, match["name"]))
        value = ""
    out.append(value)
    result.used = True
    return match.end()


def _substitute_all(file: _File, env: Mapping[str, str]) -> None:
    assert file.root is not None
    for node, loc in _walk(file.root):
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR_TAG or "$" not in node.value:
            continue
        result = substitute(node.value, env)
        for name, offset in {name: offset for offset, name in reversed(result.missing)}.items():
            file.problems.append(
                _problem_in_scalar(
                    file, node, offset, _with_loc(loc, f"environment variable {name} is not set")
                )
            )
        for offset, reference in result.malformed:
            message = (
                f"malformed reference {json.dumps(reference)} "
                "(expected ${NAME} or ${NAME:-default}; $${ writes a literal ${)"
            )
            file.problems.append(_problem_in_scalar(file, node, offset, _with_loc(loc, message)))
        if result.missing or result.malformed:
            file.failed.add(id(node))
        if result.used:
            file.written[id(node)] = (node.value, result.text)
        node.value = result.text


def _problem_in_scalar(file: _File, node: yaml.Node, offset: int, message: str) -> PolicyProblem:
    """A problem at the reference itself where the source shows it, else at the scalar."""
    start, end = node.start_mark.index, node.end_mark.index
    source = file.text[start:end]
    written = node.value[offset:]
    needle = written[: written.find("}") + 1] if "}" in written else written[:2]
    found = source.find(needle) if needle else -1
    if found < 0:
        line, column = _position(node)
        return PolicyProblem(file.path, line, column, message)
    before = file.text[: start + found]
    line = before.count("\n") + 1
    column = start + found - (before.rfind("\n") + 1) + 1
    return PolicyProblem(file.path, line, column, message)


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
        located = _locate(file.root, loc)
    else:
        located = _locate(file.root, walked.loc, key=kind == "extra_forbidden" or walked.key)
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


def _walk_type(loc: Loc) -> _Walked:
    """Follow pydantic's loc through the model types to strip what the admin did not write."""
    target: Any = PolicyFile
    parent: type[BaseModel] | None = None
    written: list[str | int] = []
    key = False
    for part in loc:
        target, discriminator = _unwrap(target)
        if part == "[key]":
            key = True
        elif _is_union(target):
            target = _union_member(target, part) if discriminator else None
        elif isinstance(target, type) and issubclass(target, BaseModel):
            parent = target
            info = target.model_fields.get(str(part))
            target = _annotation(info) if info is not None else None
            written.append(part)
        else:
            origin, args = typing.get_origin(target), typing.get_args(target)
            target = args[-1] if origin in (dict, list) and args else None
            written.append(part)
    return _Walked(tuple(written), key, parent, _unwrap(target)[0])


def _annotation(info: FieldInfo) -> Any:
    if info.discriminator is not None:
        return typing.Annotated[info.annotation, info]
    return info.annotation


def _unwrap(target: Any) -> tuple[Any, str | None]:
    """Strip Annotated and Optional; say which discriminator a union carries, if any."""
    discriminator: str | None = None
    while True:
        if typing.get_origin(target) is typing.Annotated:
            target, *metadata = typing.get_args(target)
            for item in metadata:
                if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
                    discriminator = item.discriminator
        elif _is_union(target):
            members = [m for m in typing.get_args(target) if m is not type(None)]
            if len(members) != 1:
                return target, discriminator
            target = members[0]
        else:
            return target, discriminator


def _is_union(target: Any) -> bool:
    return typing.get_origin(target) in (typing.Union, types.UnionType)


def _union_member(union: Any, tag: str | int) -> Any:
    for member in typing.get_args(union):
        if str(tag) in _tags_of(member):
            return member
    return None


def _tags_of(member: Any) -> list[str]:
    if not (isinstance(member, type) and issubclass(member, BaseModel)):
        return []
    info = member.model_fields.get("type")
    if info is None or typing.get_origin(info.annotation) is not Literal:
        return []
    return [str(tag) for tag in typing.get_args(info.annotation)]


def _union_tag_message(file: _File, walked: _Walked, error: ErrorDetails) -> tuple[Loc, str]:
    discriminator = str((error.get("ctx") or {}).get("discriminator", "type")).strip("'")
    tags = [tag for member in typing.get_args(walked.target) for tag in _tags_of(member)]
    expected = f"expected one of: {', '.join(tags)}"
    loc = (*walked.loc, discriminator)
    if error["type"] == "union_tag_not_found":
        return loc, f"missing ({expected})"
    node = _locate(file.root, loc).node
    tag = (error.get("ctx") or {}).get("tag")
    return loc, f"{expected}; got {_shown(file, node, tag)}"


_PLAIN = {
    "missing": "missing (required)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "dict_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
}
_NAME_RULE = (
    'expected a name of lower-case letters, digits, ".", "_" and "-" '
    "that starts with a letter or digit (at most 63)"
)
_SENTINEL = "\x00value\x00"


def _message(file: _File, walked: _Walked, error: ErrorDetails, node: yaml.Node | None) -> str:
    """What was expected, in the admin's terms; the value echoed only where it is safe."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        fields = ", ".join(walked.parent.model_fields) if walked.parent is not None else "?"
        return f"unknown key (expected one of: {fields})"
    if kind == "missing":
        return _PLAIN[kind]
    if kind in _PLAIN:
        return f"{_PLAIN[kind]}, got {_shown(file, node, value)}"
    if (
        kind == "string_pattern_mismatch"
        and (error.get("ctx") or {}).get("pattern") == NAME_PATTERN
    ):
        return f"{_NAME_RULE}, got {_shown(file, node, value)}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    if isinstance(value, str) and repr(value) in message:
        message = message.replace(repr(value), _SENTINEL)
    message = file.redact(message)
    if _SENTINEL in message:
        return message.replace(_SENTINEL, _shown(file, node, value))
    if kind != "value_error" and _is_scalar(value):
        return f"{message}, got {_shown(file, node, value)}"
    return message


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | date)


_YAML_BOOLEANS = {"true", "false"}


def _shown(file: _File, node: yaml.Node | None, value: Any) -> str:
    """A value for a message: as written when it came from the environment, never its value."""
    if node is not None and id(node) in file.written:
        return f"{json.dumps(file.written[id(node)][0])} (its value is not shown)"
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
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _check_schedule_nodes(file: _File) -> None:
    """Holiday calendars and `open` specs, each at its own line, whatever else is wrong.

    The models check both too, but stop at the first bad spec of a list and cannot
    consult the holiday library; here every one is reported where it was written.
    """
    schedules = _child(file.root, "schedules", key=False)
    if not isinstance(schedules, yaml.MappingNode):
        return
    for name_node, schedule in schedules.value:
        base = ("schedules", str(name_node.value))
        holidays = _child(schedule, "holidays", key=False)
        if _is_text(holidays):
            _check_text(file, holidays, (*base, "holidays"), parse_holidays, _HOLIDAYS_RULE)
        specs = _child(schedule, "open", key=False)
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
        sources=merged.sources,
        files=tuple(file.path for file in files),
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
        node = _locate(file.root, ("settings",), key=True).node
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
            node = _locate(file.root, (kind, name), key=True).node
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
        node = _locate(file.root, (section, index, "name")).node
        first = _first(merged.sources[key])
        problems.append(
            _at(file, node, f"duplicate policy name '{name}' (first defined at {first})")
        )
        return False
    merged.sources[key] = _source(file, _locate(file.root, (section, index)).node)
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
    """Each spend feed's provider must be defined (in any file): its records count there."""
    wanted = [
        ("providers", ("spend_feeds", name, "provider"), feed.provider)
        for name, feed in model.spend_feeds.items()
    ]
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
        located = _locate(file.root, loc)
        known = (
            f"expected one of: {', '.join(sorted(defined))}" if defined else f"no {kind} defined"
        )
        message = f"unknown {_KINDS[kind]} {_shown(file, located.node, name)} ({known})"
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
                node = _locate(file.root, ("policies", index, field_name), key=True).node
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
            yield _at(file, _locate(file.root, loc).node, _with_loc(loc, message))


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
            yield _at(file, _locate(file.root, loc, key=True).node, _with_loc(loc, message))


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
                    yield _at(file, _locate(file.root, loc).node, _with_loc(loc, message))


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
