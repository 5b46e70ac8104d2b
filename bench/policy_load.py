"""Benchmark: loading large and hostile policy files, as `warden validate` does.

Each case is written to a temporary file and loaded once with the registry's
capabilities; it prints the file's size, the seconds the load took and what it said.
Cases: a valid 1 MB file, a 1 MB file whose every policy has a problem, a valid 4 MB
file (just under the limit), a 1 MB file whose only problem is on its last line, and
an alias bomb. Run with `.venv/bin/python bench/policy_load.py`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from warden.policy.loader import PolicyError, load_policies
from warden.providers.registry import capability_names

HEAD = """\
version: 1
providers:
  coder-prod: {type: coder, url: "http://127.0.0.1:3000", token: t}
sinks:
  audit: {type: log}
policies:
"""
POLICY = """\
  - name: idle-dev-%05d
    description: Stop workspaces idle for two hours
    match: {provider: coder-prod, owner: [alice, bob]}
    exclude:
      - labels: {cost-control/exempt: "true"}
      - template: protected
    when: {idle_for: %s}
    warn_before: 15m
    notify: [audit]
"""


def policies(size: int, *, bad_every: int = 0) -> str:
    parts, length, index = [HEAD], len(HEAD), 0
    while length < size:
        bad = bad_every and index % bad_every == 0
        parts.append(POLICY % (index, "two hours" if bad else "2h"))
        length += len(parts[-1])
        index += 1
    return "".join(parts)


def alias_bomb() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    return "\n".join(lines) + "\n"


CASES = {
    "valid, 1 MB": lambda: policies(1_000_000),
    "every policy wrong, 1 MB": lambda: policies(1_000_000, bad_every=1),
    "valid, 4 MB": lambda: policies(4_000_000),
    "one problem on the last line, 1 MB": lambda: policies(1_000_000)
    + '  - {name: last, when: {idle_for: "never"}}\n',
    "alias bomb (9^10 values)": alias_bomb,
}


def main() -> None:
    capabilities = capability_names()
    with tempfile.TemporaryDirectory() as directory:
        for label, build in CASES.items():
            path = Path(directory) / "policies.yaml"
            path.write_text(build(), encoding="utf-8")
            started = time.perf_counter()
            try:
                loaded = load_policies([path], env={}, capabilities=capabilities)
                outcome = f"ok, {len(loaded.policies)} policies"
            except PolicyError as e:
                outcome = f"{len(e.problems)} problems listed; last: {e.problems[-1].message}"
            seconds = time.perf_counter() - started
            size = path.stat().st_size
            print(f"{label:38} {size:>9,} bytes {seconds:6.2f} s  {outcome[:90]}")


if __name__ == "__main__":
    main()
