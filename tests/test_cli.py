"""The `warden` command as users run it: exit codes, file:line:col problems, real runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import anyio
import anyio.abc
import pytest
from aiohttp.test_utils import TestServer

from tests.test_process import START_LIMIT, running_warden
from warden import __version__
from warden.cli import main
from warden.events import catalogue as ev
from warden.exits import EXIT_INTERRUPTED
from warden.settings import Settings
from warden.sim.coder import CoderSim
from warden.store import Store

TOKEN = "cli-test-coder-token-0123456789"
WARDEN = [sys.executable, "-m", "warden"]
CONSOLE_SCRIPT = Path(sys.executable).parent / "warden"
POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}"}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 15m
"""


def test_validate_prints_file_line_column_and_exits_2(tmp_path: Path, capsys):
    bad = tmp_path / "dev.yaml"
    bad.write_text("version: 1\npolicies:\n  - name: idle\n    when:\n      idle_for: two hours\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (
        f'{bad}:5:17: policies[0].when.idle_for: expected a duration such as "2h", got "two hours"'
        in err
    )


def test_validate_accepts_a_good_directory(tmp_path: Path, capsys):
    (tmp_path / "a.yaml").write_text(
        "version: 1\npolicies:\n  - {name: idle, when: {idle_for: 2h}}\n"
    )
    assert main(["validate", str(tmp_path)]) == 0
    assert "ok: 1 policies" in capsys.readouterr().out


def test_schema_is_json_that_knows_every_policy_key(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"idle_for", "running_for", "gpu_below", "for"} <= set(
        schema["$defs"]["When"]["properties"]
    )


def test_no_command_is_bad_input(capsys):
    assert main([]) == 2


@dataclass
class Deployment:
    sim: CoderSim
    env: dict[str, str]
    idle: str


@pytest.fixture
async def deployment(tmp_path: Path, clock) -> AsyncIterator[Deployment]:
    sim = CoderSim(token=TOKEN)
    from warden.clock import utc_now

    now = utc_now()
    idle = sim.add_workspace(
        name="idle",
        owner="alice",
        last_used_at=now - timedelta(hours=3),
        started_at=now - timedelta(hours=4),
    )
    sim.add_workspace(
        name="busy", owner="bob", last_used_at=now, started_at=now - timedelta(hours=1)
    )
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "policies.yaml"
        policy.write_text(POLICIES % {"url": str(server.make_url("/"))})
        env = {
            "PATH": os.environ["PATH"],
            "CODER_TOKEN": TOKEN,
            "WARDEN_POLICY_PATH": str(policy),
            "WARDEN_STATE_DIR": str(tmp_path / "state"),
            "WARDEN_LOG_FORMAT": "json",
        }
        yield Deployment(sim, env, idle)


async def warden(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *WARDEN, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_plan_prints_what_would_happen_and_acts_on_nothing(deployment: Deployment):
    code, out, _ = await warden("plan", env=deployment.env)
    assert code == 0
    assert "WARN" in out
    assert "(idle, alice)" in out
    assert "(busy, bob)" not in out
    assert not any(method == "POST" for method, _ in deployment.sim.calls)


async def test_run_once_warns_then_explain_shows_the_warning(deployment: Deployment):
    code, _, err = await warden("run", "--once", env=deployment.env)
    assert code == 0, err
    assert TOKEN not in err
    code, out, _ = await warden("explain", f"coder/{deployment.idle}", "--json", env=deployment.env)
    assert code == 0
    report = json.loads(out)
    assert report["policies"] == ["idle-dev"]
    assert list(report["memory"]["warnings"]) == ["idle-dev"]
    assert report["decisions"][0]["kind"] == "warn"


async def test_run_refuses_to_start_on_bad_policies(deployment: Deployment, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npolicies:\n  - {name: x, when: {idle_for: soon}}\n")
    code, _, err = await warden("run", env=deployment.env | {"WARDEN_POLICY_PATH": str(bad)})
    assert code == 2
    assert f"{bad}:3:" in err


PRICED = """
pricing:
  coder: {usd_per_credit: 0.10}
budgets:
  - name: org-daily
    match: {provider: [coder]}
    budget: {per: all, window: day, limit_usd: 100}
    thresholds: [{at: 50%}]
"""
RFC3339_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00"


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


async def _explained(deployment: Deployment, *args: str) -> tuple[int, str, str]:
    policy = Path(deployment.env["WARDEN_POLICY_PATH"])
    policy.write_text(policy.read_text() + PRICED)
    code, _, err = await warden("run", "--once", env=deployment.env)
    assert code == 0, err
    return await warden("explain", f"coder/{deployment.idle}", *args, env=deployment.env)


async def test_explain_json_has_every_time_in_rfc3339_utc_and_money_as_exact_strings(
    deployment: Deployment,
):
    code, out, err = await _explained(deployment, "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    times = [s for s in _strings(report) if re.match(r"\d{4}-\d\d-\d\d[T ]\d", s)]
    assert times, "the explanation holds times"
    assert [t for t in times if not re.fullmatch(RFC3339_UTC, t)] == []
    [budget] = report["budgets"]
    assert Decimal(budget["limit"]) == Decimal(100)
    assert (type(budget["spent"]), type(budget["burn_per_hour"])) == (str, str)
    assert Decimal(budget["burn_per_hour"]) > 0  # the idle one's credits, running
    assert report["decisions"][0]["workspace"] == f"coder/{deployment.idle}"


async def test_explain_prints_aligned_facts_with_times_relative_to_now(deployment: Deployment):
    code, out, err = await _explained(deployment)
    assert (code, err) == (0, "")
    assert "{" not in out, "no Python reprs"
    lines = out.splitlines()
    record = lines[1 : lines.index(next(line for line in lines if line.startswith("policies")))]
    values_start = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in record}
    assert len(values_start) == 1, record
    assert re.search(r"^first_seen_at: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(.*ago\)$", out, re.M)
    assert re.search(r"due_at: +.* UTC \(in 1[45]m", out), out
    assert re.search(r"^  spent: +\$\d", out, re.M), out
    assert "policies covering it: idle-dev" in out


async def test_explain_without_the_policies_secrets_still_names_the_covering_policies(
    deployment: Deployment,
):
    """explain sends nothing to any platform: an unset token is no reason to leave out
    which policies cover a workspace."""
    code, _, err = await warden("run", "--once", env=deployment.env)
    assert code == 0, err
    env = {k: v for k, v in deployment.env.items() if k != "CODER_TOKEN"}
    code, out, err = await warden("explain", f"coder/{deployment.idle}", env=env)
    assert (code, err) == (0, "")
    assert "policies covering it: idle-dev" in out


async def test_explain_of_an_unknown_workspace_exits_1(deployment: Deployment):
    await warden("migrate", env=deployment.env)
    code, _, err = await warden("explain", "coder/nope", env=deployment.env)
    assert code == 1
    assert "has not seen" in err


def test_a_malformed_webhook_secret_is_refused_at_its_line(tmp_path: Path, capsys):
    bad = tmp_path / "sinks.yaml"
    bad.write_text(
        "version: 1\nsinks:\n  audit:\n    type: webhook\n    url: http://127.0.0.1:9/h\n    secret: not-a-secret\n"
    )
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6:13: sinks.audit.secret:" in err
    assert "whsec_" in err
    assert "not-a-secret" not in err  # a secret is never echoed, even a malformed one


# ---------------------------------------------------------------- python -m warden, exit codes


@pytest.mark.parametrize("command", [WARDEN, [str(CONSOLE_SCRIPT)]], ids=["-m warden", "warden"])
async def test_python_m_warden_is_the_warden_command(command: list[str]):
    process = await asyncio.create_subprocess_exec(
        *command, "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert (process.returncode, out.decode()) == (0, f"warden {__version__}\n")


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["events", "--limit", "0"])
    assert exit_.value.code == 2
    assert "expected a whole number from 1" in capsys.readouterr().err


def test_a_setting_that_does_not_parse_is_bad_input_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv("WARDEN_DRY_RUN", "perhaps")
    assert main(["plan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("warden: WARDEN_DRY_RUN: Input should be a valid boolean")
    assert "perhaps" not in err  # the value is never echoed: it might have been a secret
    assert "Traceback" not in err


async def test_ctrl_c_ends_run_after_draining_with_exit_130(tmp_path: Path):
    async with running_warden(tmp_path) as running:
        with anyio.fail_after(START_LIMIT):
            await running.notify.wait_for("READY")  # the daemon's own signal handling is on
        running.signal(signal.SIGINT)
        with anyio.fail_after(10):
            await running.notify.wait_for("STOPPING")  # it drains, as at SIGTERM
            assert await running.process.wait() == EXIT_INTERRUPTED


# ---------------------------------------------------------------- warden events

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "state").mkdir()
    return {
        "PATH": os.environ["PATH"],
        "WARDEN_STATE_DIR": str(tmp_path / "state"),
        "WARDEN_LOG_FORMAT": "json",
    }


async def write_events(env: dict[str, str], *types: str) -> None:
    """Events in the outbox of `env`'s state directory, as the daemon would write them."""
    settings = Settings(state_dir=Path(env["WARDEN_STATE_DIR"]))
    store = await Store.open(settings.effective_database_url)
    try:
        await store.migrate()
        await store.add_events(
            [ev.new_event(t, f"coder/ws-{n}", now=NOW, data={"n": n}) for n, t in enumerate(types)]
        )
    finally:
        await store.aclose()


async def test_events_lists_the_outbox_newest_last(state: dict[str, str]):
    await write_events(state, ev.WORKSPACE_WARNED, ev.WORKSPACE_STOPPED, ev.WORKSPACE_WARNED)
    code, out, _ = await warden("events", "--limit", "2", env=state)
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(line[3], line[4]) for line in lines] == [
        (ev.WORKSPACE_STOPPED, "coder/ws-1"),
        (ev.WORKSPACE_WARNED, "coder/ws-2"),
    ]
    assert lines[0][0] == "#2"


async def test_events_filters_by_type_and_speaks_json_lines(state: dict[str, str]):
    await write_events(state, ev.WORKSPACE_WARNED, ev.WORKSPACE_STOPPED, ev.WORKSPACE_WARNED)
    code, out, _ = await warden("events", "--type", ev.WORKSPACE_WARNED, "--json", env=state)
    assert code == 0
    found = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["data"]) for e in found] == [
        (ev.WORKSPACE_WARNED, {"n": 0}),
        (ev.WORKSPACE_WARNED, {"n": 2}),
    ]
    assert {"seq", "id", "subject", "time", "severity"} <= found[0].keys()


async def test_an_empty_outbox_and_no_dead_letters_say_so(state: dict[str, str]):
    assert await warden("events", env=state) == (0, "no events\n", "")
    assert await warden("events", "dead-letters", env=state) == (0, "none\n", "")


@pytest.mark.parametrize("how", [["events", "--follow"], ["events", "tail"]])
async def test_following_prints_new_events_until_ctrl_c_then_exits_130(
    state: dict[str, str], how: list[str]
):
    await write_events(state, ev.WORKSPACE_WARNED)
    process = await anyio.open_process(
        [*WARDEN, *how, "--type", ev.WORKSPACE_STOPPED, "--type", ev.WORKSPACE_WARNED], env=state
    )
    async with process:
        try:
            assert process.stdout is not None
            lines = TextLines(process.stdout)
            with anyio.fail_after(30):
                assert "coder/ws-0" in await lines.next()  # the latest first, as tail -f
                await write_events(state, ev.POLICY_LOADED, ev.WORKSPACE_STOPPED)
                shown = (await lines.next()).split("\t")[3:]
                assert shown == [ev.WORKSPACE_STOPPED, "coder/ws-1"]
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                assert await process.wait() == EXIT_INTERRUPTED
        finally:  # a failure above must not leave the test waiting for the child to end
            if process.returncode is None:
                process.kill()


class TextLines:
    """The lines a child process writes, one at a time, as it writes them."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()
