"""The demo: its simulators and policies work together, it ends at Ctrl-C with a summary,
and its lines say the rule and the fact behind each decision."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from warden.actuator import CycleOutcome
from warden.cli import main
from warden.daemon import Daemon, load_policy_set
from warden.demo import DEMO_POLICIES, Stopped, avoided_lines, simulators
from warden.model import Decision, DecisionKind, Memory, State, Verb, Workspace, WorkspaceId
from warden.policy.decide import Rules, decide
from warden.policy.models import GlobalSettings, Policy
from warden.report import decision_line, outcome_lines
from warden.settings import Settings
from warden.spend.pricing import Rate


async def test_demo_policies_load_and_every_simulated_platform_is_observed(tmp_path: Path):
    async with simulators() as sims:
        settings = Settings(policy_path=[DEMO_POLICIES], state_dir=tmp_path)
        policies = load_policy_set(settings, sims.env)
        async with Daemon(settings, policies=policies, env=sims.env) as daemon:
            results = await daemon.run_cycle()
    assert {r.provider for r in results} == {
        "coder-demo",
        "strongly-demo",
        "mage-demo",
        "mage-cloud-demo",
        "agentrun-demo",
    }
    assert [r.error for r in results] == [None] * 5
    kinds = {(r.provider, d.kind) for r in results for d in r.decisions}
    assert ("coder-demo", DecisionKind.WARN) in kinds
    assert ("coder-demo", DecisionKind.ACT) in kinds  # the over-age one is extended at once
    assert ("mage-demo", DecisionKind.WARN) in kinds


# ---------------------------------------------------------------- the demo as people run it

DEMO = [sys.executable, "-m", "warden", "demo"]
FIRST_LINES = 60.0  # seconds for the demo to start, poll every simulator and warn
ENDS_AFTER_CTRL_C = 2.0  # seconds from SIGINT to the exit, summary printed


async def _line_matching(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> str:
    while True:
        raw = await stream.readline()
        assert raw, f"the demo ended before printing {pattern!r}:\n" + "".join(seen)
        seen.append(raw.decode())
        if re.search(pattern, seen[-1]):
            return seen[-1]


def _demo_env(tmp_path: Path) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    if "PYTHONPATH" in os.environ:  # the child runs the same code as the tests
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


async def test_ctrl_c_ends_the_demo_at_once_with_a_summary_and_its_state_explained(
    tmp_path: Path,
):
    """SIGINT ends the demo within 2 s with exit 130, after counts by verb; the state
    folder it names holds what `warden explain`, run as the demo prints it, reads."""
    state = tmp_path / "demo-state"
    process = await asyncio.create_subprocess_exec(
        *DEMO,
        "--seconds",
        "300",
        "--state-dir",
        str(state),
        env=_demo_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        await asyncio.wait_for(
            _line_matching(process.stdout, r"WARN +coder-demo/.* · idle-dev", seen), FIRST_LINES
        )
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), ENDS_AFTER_CTRL_C)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = "".join(seen) + out.decode()
    assert process.returncode == 130, text + err.decode()
    assert re.search(r"by verb: .*WARN [1-9]", text), text
    assert "summary of" in text
    assert "EXTEND" in text  # carol-gpu's deadline, pushed at the first Coder cycle
    assert re.search(r"exempt-frank.*no policy covers it", text), text
    [command] = [line for line in text.splitlines() if " explain " in line]
    code, shown, problems = await _run_printed(command, tmp_path)
    assert (code, problems) == (0, ""), shown
    assert re.search(r"^last_seen_at: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(.* ago\)$", shown, re.M)
    assert re.search(r"idle-dev: warn stop: idle_for", shown), shown
    assert "policies covering it: idle-dev" in shown


async def _run_printed(command: str, cwd: Path) -> tuple[int, str, str]:
    """Run a command line as the demo printed it: `VAR=value ... warden explain REF`."""
    words = shlex.split(command.split("#", 1)[0])
    env = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    argv = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=_demo_env(cwd) | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_a_state_dir_that_holds_a_demo_already_is_refused(tmp_path: Path, capsys):
    """A second demo in the same folder would mix two fleets' memories: exit 2, untouched."""
    (tmp_path / "warden.sqlite").write_bytes(b"an earlier demo")
    assert main(["demo", "--seconds", "1", "--state-dir", str(tmp_path)]) == 2
    assert "already holds a demo's state" in capsys.readouterr().err
    assert (tmp_path / "warden.sqlite").read_bytes() == b"an earlier demo"


# ---------------------------------------------------------------- its lines, pure

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
WS = Workspace(
    id=WorkspaceId("coder-demo", "ws-1"),
    name="carol-gpu",
    owner="carol",
    state=State.RUNNING,
    observed_at=NOW,
)


def test_an_extension_says_how_many_are_left_and_a_gpu_stop_its_threshold():
    extended = Decision(
        kind=DecisionKind.ACT,
        workspace=WS.id,
        policy="max-lifetime",
        verb=Verb.EXTEND,
        reason="running_for reached 8h: extending",
        extend_to=NOW + timedelta(hours=1),
        facts={"running_for": "9h", "limit": "8h", "extensions_used": 0, "extensions_max": 1},
    )
    assert decision_line(extended, {WS.id: WS}) == (
        "EXTEND      coder-demo/ws-1 (carol-gpu, carol) · max-lifetime: running_for 9h ≥ 8h: "
        "deadline pushed to 11:00:00 UTC (extension 1 of 1, none left: next time the limit "
        "is reached it stops)"
    )
    rules = Rules(
        [Policy.model_validate({"name": "gpu-idle", "when": {"gpu_below": "5%", "for": "20s"}})],
        {},
        GlobalSettings(),
    )
    samples = {"gpu": [(NOW - timedelta(seconds=s), Decimal(0)) for s in (21, 10, 0)]}
    [stop] = decide(
        rules, [WS], {WS.id: Memory(samples=samples)}, now=NOW, since=NOW - timedelta(seconds=5)
    )
    assert stop.reason == "gpu_below 5% for 21s ≥ 20s"
    assert stop.facts["below"] == "5%"


def test_the_money_avoided_is_the_price_times_the_time_left_and_unpriced_stops_are_named():
    stops = [
        Stopped(WS, NOW, Rate(Decimal("1.20"))),
        Stopped(replace(WS, id=WorkspaceId("agentrun-demo", "a")), NOW, Rate(None, "no pricing")),
    ]
    lines = avoided_lines(stops, ended=NOW + timedelta(minutes=30))
    assert lines[0].startswith("  the stops avoided $0.6000 by the demo's end")
    assert "coder-demo/ws-1 (carol-gpu): $1.2000/h x 30m = $0.6000" in lines[2]
    assert lines[-1] == "  not counted, no price known: agentrun-demo/a (no pricing)"


def test_waiting_and_held_actions_are_lines_that_say_why():
    stop = Decision(kind=DecisionKind.ACT, workspace=WS.id, policy="idle-dev", verb=Verb.STOP)
    outcome = CycleOutcome(
        deferred=[(stop, "the provider is failing: its circuit is open")],
        held=[(stop, "7 stops is more than 25% of 10 running")],
    )
    assert list(outcome_lines(outcome, {WS.id: WS})) == [
        "WAIT        coder-demo/ws-1 (carol-gpu, carol) · idle-dev: stop: the provider is "
        "failing: its circuit is open",
        "HELD        coder-demo/ws-1 (carol-gpu, carol) · idle-dev: stop: 7 stops is more than "
        "25% of 10 running",
    ]


def test_no_stops_avoid_nothing_and_say_so():
    assert avoided_lines([], ended=NOW) == ["  no stops yet, so nothing avoided"]
