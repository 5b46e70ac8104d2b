"""Lifecycle policies on Mage: the policy key, its validation, and the daemon patching the
real Mage simulator once, whole (start hooks kept), and again only when something changed."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import START
from tests.contracts.mage import CLUSTER_REQUESTS, validate_body
from tests.events_rig import check_schema, open_store
from tests.factories import rules, workspace
from warden.actuator import Actuator, Cycle, idempotency_key
from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.model import EMPTY_MEMORY, DecisionKind, Verb, Workspace
from warden.policy.decide import decide
from warden.policy.loader import PolicyError, load_policies
from warden.policy.models import MageProvider, Policy
from warden.providers.mage import MageAdapter, to_workspace
from warden.providers.registry import capability_names
from warden.settings import Settings
from warden.sim.mage import MageSim, mage_error

API_KEY = "mage-lifecycle-test-key-0123456789"

HOOKS: dict[str, Any] = {
    "pre_start_script_path": "scripts/pre_start.sh",
    "post_start": {"command": ["/bin/sh", "-c", "echo ready"], "hook_path": "hooks/post.py"},
}
OFF = {"termination_policy": {"enable_auto_termination": False, "max_idle_seconds": 0}} | HOOKS
TWO_HOURS = {"enable_auto_termination": True, "max_idle_seconds": 7200}

POLICIES = """\
version: 1
providers:
  mage: {type: mage, url: "%(url)s", api_key: "${MAGE_KEY}", poll_interval: 60s}
policies:
  - name: mage-idle
    match: {provider: mage}
    lifecycle: {max_idle: %(max_idle)s}
    dry_run: %(dry_run)s
"""


def lifecycle_policy(**lifecycle: Any) -> Policy:
    return Policy.model_validate({"name": "p", "lifecycle": lifecycle or {"max_idle": "2h"}})


# ---------------------------------------------------------------- the policy key


def test_max_idle_translates_to_the_seeds_termination_fields():
    assert lifecycle_policy(max_idle="2h").lifecycle.termination_policy() == TWO_HOURS  # type: ignore[union-attr]
    off = lifecycle_policy(auto_termination=False).lifecycle
    assert off is not None
    assert off.termination_policy() == {"enable_auto_termination": False}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of `when`, `schedule` or `lifecycle`; got none"),
        (
            {"lifecycle": {"max_idle": "2h"}, "when": {"idle_for": "1h"}},
            "exactly one of `when`, `schedule` or `lifecycle`; got `when`, `lifecycle`",
        ),
        (
            {"lifecycle": {"max_idle": "2h"}, "do": "stop", "warn_before": "5m"},
            "takes no `do`, `warn_before`",
        ),
        ({"lifecycle": {}}, "expected max_idle, auto_termination or both"),
        ({"lifecycle": {"auto_termination": True}}, "needs max_idle"),
        ({"lifecycle": {"max_idle": "30s"}}, "at least 1m"),
    ],
)
def test_a_lifecycle_policy_is_refused_with_a_clear_message(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Policy.model_validate({"name": "p"} | fields)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_lifecycle_policy_matching_a_provider_that_cannot_is_refused_with_its_line(
    tmp_path: Path,
):
    path = write(
        tmp_path,
        """\
        providers:
          mage-prod: {type: mage, url: "http://127.0.0.1:6789"}
          coder-prod: {type: coder, url: "http://127.0.0.1:3000", token: t}
        policies:
          - name: mage-idle
            lifecycle: {max_idle: 2h}
          - name: mage-only
            match: {provider: mage-prod}
            lifecycle: {max_idle: 2h}
        """,
    )
    with pytest.raises(PolicyError) as raised:
        load_policies([path], env={}, capabilities=capability_names())
    assert [str(p) for p in raised.value.problems] == [
        f'{path}:6:5: provider "coder-prod" (coder) cannot set_lifecycle'
    ]


# ---------------------------------------------------------------- the snapshot


@dataclass
class Rig:
    sim: MageSim
    clock: ManualClock
    url: str
    http: aiohttp.ClientSession

    def adapter(self) -> MageAdapter:
        config = MageProvider.model_validate({"type": "mage", "url": self.url, "api_key": API_KEY})
        return MageAdapter("mage", config, self.http)

    def patches(self) -> list[Any]:
        return [r.body for r in self.sim.requests if r.route == "update_workspace"]


@pytest.fixture
async def mage(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = MageSim(clock=clock, api_key=API_KEY)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        yield Rig(sim, clock, str(server.make_url("/")), http)


async def test_the_snapshot_carries_the_whole_lifecycle_config(mage: Rig):
    mage.sim.add_workspace("hooked", lifecycle_config=copy.deepcopy(OFF))
    mage.sim.add_workspace("bare")
    adapter = mage.adapter()
    hooked = await adapter.refresh("hooked", now=mage.clock())
    assert hooked.facts["lifecycle_config"] == OFF
    assert (await adapter.refresh("bare", now=mage.clock())).facts["lifecycle_config"] is None


@pytest.mark.parametrize("raw", [{}, {"lifecycle_config": "termination: on"}])
def test_a_config_mage_does_not_report_is_unknown_and_never_patched(raw: dict[str, Any]):
    item = {"name": "dev", "project_uuid": "u", "instance": {"name": "dev", "status": "STOPPED"}}
    ws = to_workspace(item | raw, provider="mage", now=START, activity=None, activity_note="")
    assert "lifecycle_config" not in ws.facts
    assert decide(rules(lifecycle_policy()), [ws], {}, now=START, since=None) == []


async def test_the_patch_merges_into_the_fresh_read_not_the_polled_one(mage: Rig, tmp_path: Path):
    """A hook added between the poll and the action is kept: the config sent is the fresh one."""
    mage.sim.add_workspace("dev", lifecycle_config={"termination_policy": {"max_idle_seconds": 0}})
    adapter, now = mage.adapter(), mage.clock()
    polled = await adapter.refresh("dev", now=now)
    mage.sim.workspace("dev").lifecycle_config = copy.deepcopy(OFF)  # someone adds hooks
    policy_rules = rules(lifecycle_policy(max_idle="2h"))
    decisions = decide(policy_rules, [polled], {}, now=now, since=None)
    assert [(d.kind, d.verb) for d in decisions] == [(DecisionKind.ACT, Verb.CONFIGURE)]
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
    try:
        cycle = Cycle(
            provider=adapter,
            rules=policy_rules,
            snapshots={polled.id: polled},
            memory={},
            now=now,
            since=None,
            dry_run=False,
            store=store,
        )
        outcome = await Actuator().apply(cycle, decisions)
    finally:
        await store.aclose()
    assert outcome.done == decisions
    assert mage.sim.workspace("dev").lifecycle_config == HOOKS | {"termination_policy": TWO_HOURS}


def test_the_idempotency_key_changes_with_the_settings_wanted_and_the_config_replaced():
    ws = _snapshot(OFF)
    key = _key(lifecycle_policy(max_idle="2h"), ws)
    assert key == _key(lifecycle_policy(max_idle="2h"), ws)
    assert key != _key(lifecycle_policy(max_idle="1h"), ws)
    drifted = OFF | {
        "termination_policy": {"enable_auto_termination": False, "max_idle_seconds": 60}
    }
    assert key != _key(lifecycle_policy(max_idle="2h"), _snapshot(drifted))
    assert "|configure|lifecycle:" in key


def _snapshot(lifecycle: dict[str, Any]) -> Workspace:
    return workspace("dev", now=START, provider="mage", facts={"lifecycle_config": lifecycle})


def _key(policy: Policy, ws: Workspace) -> str:
    [decision] = decide(rules(policy), [ws], {}, now=ws.observed_at, since=None)
    return idempotency_key(decision, EMPTY_MEMORY, ws, dry_run=False)


# ---------------------------------------------------------------- the daemon


@dataclass
class DaemonRig:
    mage: Rig
    settings: Settings
    env: dict[str, str]
    policy_file: Path

    def write(self, *, max_idle: str = "2h", dry_run: bool = False) -> None:
        values = {"url": self.mage.url, "max_idle": max_idle, "dry_run": str(dry_run).lower()}
        self.policy_file.write_text(POLICIES % values, encoding="utf-8")

    def daemon(self) -> Daemon:
        return Daemon(
            self.settings,
            policies=load_policy_set(self.settings, self.env),
            clock=self.mage.clock,
            env=self.env,
            sleep=_no_wait,
        )


async def _no_wait(_seconds: float) -> None:
    return None


@pytest.fixture
def rig(mage: Rig, tmp_path: Path) -> DaemonRig:
    settings = Settings(policy_path=[tmp_path / "policies.yaml"], state_dir=tmp_path / "state")
    made = DaemonRig(mage, settings, {"MAGE_KEY": API_KEY}, tmp_path / "policies.yaml")
    made.write()
    return made


async def events_of(daemon: Daemon, type_: str) -> list[Any]:
    assert daemon.store is not None
    events = [s.event() for s in await daemon.store.events_after(0, limit=10_000)]
    return [e for e in events if e.type == type_]


def patch(config: dict[str, Any]) -> dict[str, Any]:
    return {"workspace": {"action": "patch", "lifecycle_config": config}}


async def test_the_patch_is_sent_once_whole_and_the_hooks_survive(rig: DaemonRig):
    sim = rig.mage.sim
    sim.add_workspace("hooked", lifecycle_config=copy.deepcopy(OFF))
    sim.add_workspace("bare", status="STOPPED")  # Mage's null config: known, and empty
    sim.add_workspace("already", lifecycle_config={"termination_policy": dict(TWO_HOURS)})
    wanted = HOOKS | {"termination_policy": TWO_HOURS}
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
        assert sorted(d.workspace.native for d in result.outcome.done) == ["bare", "hooked"]
        assert sim.workspace("hooked").lifecycle_config == wanted
        assert sim.workspace("bare").lifecycle_config == {"termination_policy": TWO_HOURS}
        assert sim.workspace("already").actions == []
        rig.mage.clock.advance(minutes=1)
        [again] = await daemon.run_cycle()
        configured = await events_of(daemon, ev.WORKSPACE_CONFIGURED)
    assert again.decisions == []  # as written: nothing to do, no patch every cycle
    patches = rig.mage.patches()
    assert len(patches) == 2
    assert patch(wanted) in patches
    assert patch({"termination_policy": TWO_HOURS}) in patches
    for body in patches:
        validate_body(body, CLUSTER_REQUESTS["update_workspace"])
    assert len(configured) == 2
    for event in configured:
        check_schema(event)
    [hooked] = [e for e in configured if e.subject == "mage/hooked"]
    assert hooked.data["facts"]["lifecycle_config"] == wanted
    assert "enable_auto_termination false → true" in hooked.data["reason"]


async def test_a_policy_edit_or_a_change_on_the_platform_is_applied_again(rig: DaemonRig):
    sim = rig.mage.sim
    sim.add_workspace("dev", lifecycle_config=copy.deepcopy(OFF))
    async with rig.daemon() as daemon:
        await daemon.run_cycle()
        rig.write(max_idle="1h")
        assert await daemon.reload()
        rig.mage.clock.advance(minutes=1)
        await daemon.run_cycle()
        one_hour = {"enable_auto_termination": True, "max_idle_seconds": 3600}
        assert sim.workspace("dev").lifecycle_config == HOOKS | {"termination_policy": one_hour}
        sim.workspace("dev").lifecycle_config = copy.deepcopy(OFF)  # someone turns it off
        rig.mage.clock.advance(minutes=1)
        await daemon.run_cycle()
    assert len(rig.mage.patches()) == 3
    assert sim.workspace("dev").lifecycle_config == HOOKS | {"termination_policy": one_hour}


async def test_a_platform_that_keeps_its_old_config_is_not_patched_every_cycle(rig: DaemonRig):
    """Open-source Mage answers a lifecycle patch and ignores it: one patch, not one a minute."""
    sim = rig.mage.sim
    sim.add_workspace("dev", lifecycle_config=copy.deepcopy(OFF))
    async with rig.daemon() as daemon:
        for _ in range(3):
            await daemon.run_cycle()
            sim.workspace("dev").lifecycle_config = copy.deepcopy(OFF)
            rig.mage.clock.advance(minutes=1)
    assert len(rig.mage.patches()) == 1


async def test_dry_run_plans_the_patch_once_and_sends_nothing(rig: DaemonRig):
    rig.write(dry_run=True)
    rig.mage.sim.add_workspace("dev", lifecycle_config=copy.deepcopy(OFF))
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
        rig.mage.clock.advance(minutes=1)
        await daemon.run_cycle()
        planned = await events_of(daemon, ev.ACTION_PLANNED)
    assert [(d.verb, d.dry_run) for d in result.outcome.planned] == [(Verb.CONFIGURE, True)]
    assert rig.mage.patches() == []
    assert rig.mage.sim.workspace("dev").lifecycle_config == OFF
    assert len(planned) == 1
    check_schema(planned[0])
    assert planned[0].data["facts"]["lifecycle_config"]["post_start"] == HOOKS["post_start"]


async def test_mages_error_body_on_a_patch_is_a_failure_event_and_the_next_cycle_retries(
    rig: DaemonRig,
):
    sim = rig.mage.sim
    sim.add_workspace("dev", lifecycle_config=copy.deepcopy(OFF))
    sim.fail_next(
        "PUT",
        "/api/workspaces/dev",
        status=200,
        body=mage_error(400, "api_resource_error", "Failed to patch StatefulSet"),
    )
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
        [(decision, error)] = result.outcome.failed
        assert decision.verb is Verb.CONFIGURE
        assert "Failed to patch StatefulSet" in error
        assert sim.workspace("dev").lifecycle_config == OFF
        [failed] = await events_of(daemon, ev.ACTION_FAILED)
        check_schema(failed)
        rig.mage.clock.advance(minutes=1)
        [retried] = await daemon.run_cycle()
    assert [d.verb for d in retried.outcome.done] == [Verb.CONFIGURE]
    assert sim.workspace("dev").lifecycle_config == HOOKS | {"termination_policy": TWO_HOURS}


async def test_a_lifecycle_write_is_not_counted_in_the_blast_radius(rig: DaemonRig):
    """Twelve workspaces, a limit of 25%: every one is configured, none is held."""
    for i in range(12):
        rig.mage.sim.add_workspace(f"ws-{i}", lifecycle_config=copy.deepcopy(OFF))
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
    assert len(result.outcome.done) == 12
    assert result.outcome.held == []
