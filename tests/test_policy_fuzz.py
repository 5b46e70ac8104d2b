"""Any bytes in a policy file give PolicyError, each within a second, and nothing else.

Two sources of cases. A mutation corpus, built deterministically (seeded) from the
shipped policy files: byte flips, control characters, deep nesting, huge numbers and
durations, keys swapped for others, YAML's odd corners spliced in (tags, aliases,
anchors, complex keys), truncations. And hypothesis, deriving documents from the
models' own keys and dumping them as YAML. Every case is loaded as `warden validate`
would, with and without lint mode; a case that raises anything but PolicyError fails
the test with the seed that rebuilds it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warden.policy.loader import PolicyError, load_policies
from warden.policy.models import (
    Budget,
    BudgetPolicy,
    CoderProvider,
    GlobalSettings,
    Policy,
    PolicyFile,
    Schedule,
    Selector,
    Threshold,
    WebhookSink,
    When,
)
from warden.policy.typewalk import written_names
from warden.providers.registry import capability_names

REPO = Path(__file__).resolve().parents[1]
SEEDS = [
    REPO / "policies" / "coder.yaml",
    REPO / "daemon" / "warden" / "sim" / "demo-policies.yaml",
]
ENV = {
    "CODER_TOKEN": "fuzz-coder-token",
    "AUDIT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}
CORPUS_SIZE = 10_000
CASE_LIMIT = 1.0  # seconds for one case, however nasty
CAPABILITIES = capability_names()

KEYS = sorted(
    {
        name
        for model in (
            PolicyFile,
            GlobalSettings,
            CoderProvider,
            WebhookSink,
            Schedule,
            Policy,
            Selector,
            When,
            BudgetPolicy,
            Budget,
            Threshold,
        )
        for name in written_names(model)
    }
)
ODD_CORNERS = [
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!omap [{a: 1}]",
    "!custom x",
    "&anchor x",
    "*undefined",
    "<<",
    "<<: *undefined",
    "? [a, b]\n: c",
    "? {a: 1}\n: c",
    "{[a]: 1}",
    ".nan",
    "-.inf",
    "0x" + "f" * 200,
    "1:2:3:4:5:6:7:8:9:10",
    "2024-13-45",
    "2024-01-01T25:61:00+99:00",
    "~",
    "${UNSET}",
    "${BAD",
    "${A:-${B}}",
    "$${X}",
    "${CODER_TOKEN}",
    "'unterminated",
    '"\\q"',
    "|\n  text\n",
    "---\nsecond: document",
    "\ufeff",
    "\t",
    "- - - -",
    ": :",
    "[" * 70 + "]" * 70,
    "9" * 5000,
    "9" * 30 + "d",
    "1" * 4400 + "h",
]


def mutations(text: bytes, rng: random.Random) -> bytes:
    """One to three of the mutations below, chosen by `rng`."""
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(MUTATIONS)(text, rng)
    return text


def _flip(text: bytes, rng: random.Random) -> bytes:
    if not text:
        return bytes([rng.randrange(256)])
    at = rng.randrange(len(text))
    return text[:at] + bytes([text[at] ^ (1 << rng.randrange(8))]) + text[at + 1 :]


def _control(text: bytes, rng: random.Random) -> bytes:
    at = rng.randint(0, len(text))
    return text[:at] + bytes([rng.choice([0, 1, 7, 8, 11, 12, 27, 127])]) + text[at:]


def _random_bytes(text: bytes, rng: random.Random) -> bytes:
    at = rng.randint(0, len(text))
    return text[:at] + rng.randbytes(rng.randint(1, 8)) + text[at:]


def _truncate(text: bytes, rng: random.Random) -> bytes:
    return text[: rng.randint(0, len(text))]


def _delete(text: bytes, rng: random.Random) -> bytes:
    at = rng.randint(0, len(text))
    return text[:at] + text[at + rng.randint(1, 40) :]


def _duplicate_line(text: bytes, rng: random.Random) -> bytes:
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    at = rng.randrange(len(lines))
    return b"".join([*lines[: at + 1], lines[at], *lines[at + 1 :]])


def _swap_key(text: bytes, rng: random.Random) -> bytes:
    """A key replaced by another the models know (or a typo of one)."""
    old, new = rng.choice(KEYS), rng.choice(KEYS)
    if rng.random() < 0.3:
        new = new[:-1] + "x"
    return text.replace(f"{old}:".encode(), f"{new}:".encode(), 1)


def _splice(text: bytes, rng: random.Random) -> bytes:
    """A value replaced by one of YAML's odd corners."""
    lines = text.splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if b": " in line]
    if not candidates:
        return text + rng.choice(ODD_CORNERS).encode()
    at = rng.choice(candidates)
    head = lines[at].split(b": ", 1)[0]
    lines[at] = head + b": " + rng.choice(ODD_CORNERS).encode() + b"\n"
    return b"".join(lines)


def _nest(text: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([10, 63, 64, 65, 100, 1000, 20000])
    if rng.random() < 0.5:
        return b"policies: " + b"[" * depth + b"]" * depth + b"\n" + text
    depth = min(depth, 1000)  # indentation grows with the square of the depth
    return b"".join(b" " * i + b"k:\n" for i in range(depth)) + b" " * depth + b"k: v\n"


def _huge_number(text: bytes, rng: random.Random) -> bytes:
    digits = b"9" * rng.choice([20, 400, 4301, 5000])
    for old in (b"2h", b"15m", b"60s", b"20", b"25%", b"50"):
        if old in text:
            return text.replace(old, digits + rng.choice([b"", b"d", b"%", b"h"]), 1)
    return text + b"\nversion: " + digits


def _alias_bomb(text: bytes, rng: random.Random) -> bytes:
    width = rng.choice([2, 9, 20])
    lines = [b"a0: &a0 [x]"]
    for level in range(1, rng.choice([3, 8, 12])):
        refs = b", ".join([b"*a%d" % (level - 1)] * width)
        lines.append(b"a%d: &a%d [%s]" % (level, level, refs))
    return b"\n".join(lines) + b"\n" + text


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    _flip,
    _control,
    _random_bytes,
    _truncate,
    _delete,
    _duplicate_line,
    _swap_key,
    _swap_key,
    _splice,
    _splice,
    _nest,
    _huge_number,
    _alias_bomb,
]


def corpus(size: int, seed: int = 20261124) -> Iterator[tuple[int, bytes]]:
    """(case number, bytes): the same cases every run."""
    rng = random.Random(seed)
    bases = [path.read_bytes() for path in SEEDS]
    for case in range(size):
        yield case, mutations(rng.choice(bases), rng)


def load_or_policy_error(path: Path, *, lint: bool) -> float:
    """Load as `warden validate` does; the seconds it took. Fails on any other error."""
    started = time.perf_counter()
    problems: list[str] = ["none: it loaded"]
    try:
        load_policies([path], env=ENV, capabilities=CAPABILITIES, unset_ok=lint)
    except PolicyError as e:
        problems = [str(p) for p in e.problems]
    assert problems, "a PolicyError names at least one problem"
    assert all(problems)
    return time.perf_counter() - started


def test_the_mutation_corpus_gives_policy_errors_only(tmp_path: Path):
    path = tmp_path / "case.yaml"
    failures: list[str] = []
    slowest = 0.0
    for case, text in corpus(CORPUS_SIZE):
        path.write_bytes(text)
        try:
            slowest = max(slowest, load_or_policy_error(path, lint=case % 2 == 1))
        except Exception as e:
            failures.append(f"case {case}: {type(e).__name__}: {e}"[:300])
    assert failures == []
    assert slowest <= CASE_LIMIT


def test_the_corpus_is_the_same_every_run():
    assert list(corpus(50)) == list(corpus(50))


def test_the_corpus_reaches_the_models_not_just_the_parser(tmp_path: Path):
    """Many cases are valid YAML whose problems are the models' (else it fuzzes little)."""
    path = tmp_path / "case.yaml"
    parsed = 0
    for _case, text in corpus(500):
        path.write_bytes(text)
        try:
            load_policies([path], env=ENV, capabilities=CAPABILITIES)
        except PolicyError as e:
            messages = " ".join(p.message for p in e.problems)
            parsed += "invalid YAML" not in messages and "not allowed in YAML" not in messages
    assert parsed >= 200


# ---------------------------------------------------------------- hypothesis

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["2h", "15m", "25%", "coder", "webhook", "stop", "Europe/Berlin", "${X}"]),
)
KEY = st.one_of(st.sampled_from(KEYS), st.text(max_size=10))


def documents() -> st.SearchStrategy[object]:
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=5)
        ),
        max_leaves=30,
    )


@settings(
    max_examples=1000,
    deadline=None,  # the time is measured and asserted below, per example
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=st.dictionaries(KEY, documents(), max_size=6), lint=st.booleans())
def test_documents_built_from_the_models_keys_give_policy_errors_only(
    tmp_path: Path, document: dict[str, object], lint: bool
):
    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    assert load_or_policy_error(path, lint=lint) <= CASE_LIMIT


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=200))
def test_raw_bytes_give_policy_errors_only(tmp_path: Path, data: bytes):
    path = tmp_path / "raw.yaml"
    path.write_bytes(data)
    assert load_or_policy_error(path, lint=False) <= CASE_LIMIT
