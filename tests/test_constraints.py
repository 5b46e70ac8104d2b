"""constraints.txt pins every dependency, direct or transitive, at a version pyproject allows.

Every install (`make install`, the Dockerfile, CI) runs `pip install -c constraints.txt`;
a dependency missing from the file would float, and this test says which one.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent
PROJECT = "workspace-warden"
EXTRAS = frozenset({"dev"})


def pins() -> dict[str, str]:
    """`name==version` lines of constraints.txt, by canonical name."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            found[canonicalize_name(name)] = version
    return found


def declared() -> list[Requirement]:
    """What pyproject.toml asks for: the dependencies and every optional group."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = project.get("optional-dependencies", {}).values()
    return [Requirement(r) for r in [*project["dependencies"], *(r for g in groups for r in g)]]


def installed_closure() -> dict[str, str]:
    """Every distribution the installed project pulls in with its extras, and its version."""
    found: dict[str, str] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    pending: list[tuple[str, frozenset[str]]] = [(PROJECT, EXTRAS)]
    while pending:
        name, extras = pending.pop()
        dist = metadata.distribution(name)
        key = canonicalize_name(dist.metadata["Name"])
        if (key, extras) in visited:
            continue
        visited.add((key, extras))
        found[key] = dist.version
        environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate(e) for e in environments):
                pending.append((req.name, frozenset(req.extras)))
    del found[PROJECT]
    return found


def test_every_declared_dependency_is_pinned_within_its_range():
    pinned = pins()
    problems = []
    for req in declared():
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name}: not in constraints.txt")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version}: outside pyproject's {req.specifier}")
    assert not problems, "make constraints after pip install -e '.[dev]': " + "; ".join(problems)


def test_every_installed_dependency_is_pinned_at_the_installed_version():
    pinned = pins()
    drift = {
        name: (version, pinned.get(name))
        for name, version in installed_closure().items()
        if pinned.get(name) != version
    }
    assert not drift, f"installed vs constraints.txt (make constraints): {drift}"
