"""Keep-alives: idle and utilisation policies hold their stop until the keep-alive ends,
each at most its own `keep_alive.max`; lifetimes ignore them. The owner's signed link
(a job may call it with curl), the admin API and the policy language."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from tests.admin_rig import ADMIN_TOKEN, PUBLIC_URL, READ_TOKEN, SNOOZE_SECRET, AdminRig, admin_rig
from tests.conftest import START
from tests.factories import memory, policy, rules, workspace
from tests.test_policy_loader import problems, write
from warden.clock import ManualClock
from warden.events import catalogue as ev
from warden.events.keepalive import KeepAliveLinks
from warden.events.snooze import SnoozeLinks, redact_links, without_snooze_links
from warden.model import DecisionKind, Verb, Warning, WorkspaceId
from warden.policy.decide import decide, next_due

H = timedelta(hours=1)
IDLE = policy(name="idle-dev", when={"idle_for": "2h"}, warn_before="15m")


def _decide(p, *, idle=3 * H, kept_at=START - H, until=START + 12 * H, now=START):  # type: ignore[no-untyped-def]
    ws = workspace(now=now, idle=idle)
    mem = memory(kept_alive_at=kept_at, kept_alive_until=until)
    return decide(rules(p), [ws], {ws.id: mem}, now=now, since=None), ws, mem


def test_an_idle_workspace_kept_alive_is_neither_warned_nor_stopped() -> None:
    decisions, _, _ = _decide(IDLE)
    assert decisions == []


def test_the_hold_lasts_at_most_the_policys_maximum_then_the_warning_comes() -> None:
    """Asked at 09:00 for 12h, a policy allowing 8h warns at 16:45 for a stop at 17:00."""
    kept_at = START - H
    held = kept_at + 8 * H
    before, _, _ = _decide(IDLE, now=held - timedelta(minutes=16), kept_at=kept_at)
    assert before == []
    [warn], _, _ = _decide(IDLE, now=held - timedelta(minutes=15), kept_at=kept_at)
    assert (warn.kind, warn.due_at) == (DecisionKind.WARN, held)
    assert warn.facts["kept_alive_until"] == held.isoformat()


def test_a_shorter_maximum_or_zero_holds_less_or_nothing() -> None:
    short = policy(name="idle-dev", when={"idle_for": "2h"}, keep_alive={"max": "30m"})
    [stop], _, _ = _decide(short)  # asked an hour ago: 30m have passed
    assert (stop.kind, stop.verb) == (DecisionKind.ACT, Verb.STOP)
    off = policy(name="idle-dev", when={"idle_for": "2h"}, keep_alive={"max": "0s"})
    [stop], _, _ = _decide(off)
    assert stop.kind is DecisionKind.ACT


def test_a_warning_given_before_is_cleared_by_a_keep_alive() -> None:
    ws = workspace(now=START, idle=3 * H)
    warned = Warning(policy="idle-dev", verb=Verb.STOP, warned_at=START, due_at=START + H / 4)
    mem = memory(kept_alive_at=START, kept_alive_until=START + 4 * H, warnings={"idle-dev": warned})
    [clear] = decide(rules(IDLE), [ws], {ws.id: mem}, now=START, since=None)
    assert clear.kind is DecisionKind.CLEAR
    assert clear.reason == f"kept alive until {(START + 4 * H).isoformat()}"
    # The daemon wakes when the hold ends less the warning's lead, not at the next poll.
    cleared = memory(kept_alive_at=START, kept_alive_until=START + 4 * H)
    assert next_due(rules(IDLE), [ws], {ws.id: cleared}, now=START) == START + 4 * H - H / 4


def test_utilisation_policies_hold_too_but_lifetimes_do_not() -> None:
    lifetime = policy(name="max-lifetime", when={"running_for": "2h"})
    ws = workspace(now=START, running=3 * H)
    mem = memory(kept_alive_at=START, kept_alive_until=START + 4 * H)
    [stop] = decide(rules(lifetime), [ws], {ws.id: mem}, now=START, since=None)
    assert (stop.kind, stop.policy) == (DecisionKind.ACT, "max-lifetime")
    gpu = policy(name="gpu-idle", when={"gpu_below": "5%", "for": "30m"})
    assert gpu.respects_keep_alive
    assert not lifetime.respects_keep_alive


def test_keep_alive_on_a_lifetime_or_schedule_policy_is_refused_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(
        "p.yaml",
        """\
        policies:
          - name: max-lifetime
            when: {running_for: 12h}
            keep_alive: {max: 8h}
        """,
    )
    [problem] = problems(path)
    assert problem.startswith("p.yaml:2:5: policies[0]: ")
    assert "`keep_alive` applies to idle_for, gpu_below and cpu_below policies" in problem


# ---------------------------------------------------------------- links and the API


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock, snooze_links=True) as rig:
        await rig.daemon.run_cycle()
        yield rig


def _link(rig: AdminRig, name: str) -> str:
    links = KeepAliveLinks(SNOOZE_SECRET.encode(), PUBLIC_URL)
    ws = WorkspaceId("coder", rig.ids[name])
    return rig.local(links.make(ws, now=rig.clock()))


async def test_a_job_keeps_its_workspace_alive_with_curl(rig: AdminRig) -> None:
    """`curl -X POST "$LINK?for=4h"`: JSON back (curl asks for */*), the event told."""
    link = _link(rig, "alice-idle")
    async with rig.http.post(f"{link}?for=4h", headers={"Accept": "*/*"}) as resp:
        status, body, headers = resp.status, await resp.json(), resp.headers
    until = rig.clock() + 4 * H
    assert (status, body["status"], body["kept_alive_until"]) == (
        200,
        "kept_alive",
        until.isoformat(),
    )
    assert body["held"] == {"idle-dev": until.isoformat()}
    assert headers["Cache-Control"] == "no-store"
    assert rig.daemon.store is not None
    row = await rig.daemon.store.workspace_row(WorkspaceId("coder", rig.ids["alice-idle"]))
    assert row is not None
    assert (row.kept_alive_until, row.kept_alive_by) == (until, "owner link")
    # The link is reusable: a job calls it again later, and asks for more than allowed.
    rig.clock.advance(seconds=3600)
    status, body, _ = await rig.call("POST", f"{link}?for=30h", token=None)
    assert body["held"] == {"idle-dev": (rig.clock() + 8 * H).isoformat()}  # the default max


async def test_the_link_asks_first_on_get_and_refuses_what_is_not_ours(rig: AdminRig) -> None:
    link = _link(rig, "bob-idle")
    async with rig.http.get(link, headers={"Accept": "text/html"}) as resp:
        status, page = resp.status, await resp.text()
    assert status == 200
    assert "Keep alive 4h" in page
    assert rig.daemon.store is not None
    row = await rig.daemon.store.workspace_row(WorkspaceId("coder", rig.ids["bob-idle"]))
    assert row is not None
    assert row.kept_alive_until is None  # GET changed nothing
    forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    status, body, _ = await rig.call("POST", forged, token=None)
    assert (status, body["error"]["code"]) == (403, "link_invalid")
    snooze_token = (
        SnoozeLinks(SNOOZE_SECRET.encode(), PUBLIC_URL)
        .make(WorkspaceId("coder", rig.ids["bob-idle"]), "idle-dev", rig.clock(), now=rig.clock())
        .rsplit("/", 1)[1]
    )
    status, body, _ = await rig.call("POST", f"/keep-alive/{snooze_token}", token=None)
    assert status == 403  # a snooze token is no keep-alive token
    status, body, _ = await rig.call("POST", f"{link}?for=forever", token=None)
    assert (status, body["error"]["code"]) == (400, "bad_request")
    rig.clock.advance(seconds=31 * 24 * 3600)
    status, body, _ = await rig.call("POST", link, token=None)
    assert (status, body["error"]["code"]) == (410, "link_expired")


async def test_admins_keep_alive_through_the_api_and_readers_cannot(rig: AdminRig) -> None:
    ref = rig.ref("carol-gpu")
    status, body, _ = await rig.call(
        "POST", f"/v1/workspaces/{ref}/keep-alive", json={"for": "2h"}, token=READ_TOKEN
    )
    assert status == 403
    status, body, _ = await rig.call(
        "POST", f"/v1/workspaces/{ref}/keep-alive", json={"for": "2h"}, token=ADMIN_TOKEN
    )
    assert status == 200
    assert body["kept_alive_until"] == (rig.clock() + 2 * H).isoformat()
    status, body, _ = await rig.call("POST", "/v1/workspaces/coder/nope/keep-alive", json={})
    assert status == 404
    assert rig.daemon.store is not None
    events = await rig.daemon.store.events_after(0, limit=1000)
    [kept] = [e for e in events if e.type == ev.WORKSPACE_KEPT_ALIVE]
    assert (kept.data["kept_alive_by"], kept.data["asked"]) == ("admin", "2h")


async def test_warnings_carry_the_keep_alive_link_to_the_admin_only(rig: AdminRig) -> None:
    assert rig.daemon.store is not None
    events = await rig.daemon.store.events_after(0, limit=1000)
    warned = [e for e in events if e.type == ev.WORKSPACE_WARNED]
    assert warned
    link = warned[0].data["links"]["keep_alive"]
    assert link.startswith(f"{PUBLIC_URL}/keep-alive/")
    assert "keep_alive" not in without_snooze_links(dict(warned[0].data)).get("links", {})
    assert redact_links(f"see {link} now") == f"see {PUBLIC_URL}/keep-alive/[redacted] now"
    _, body, _ = await rig.call("GET", "/v1/events", token=READ_TOKEN)
    assert "/keep-alive/" not in str(body)


# ---------------------------------------------------------------- the command


async def _warden(rig: AdminRig, *args: str, **env: str) -> tuple[int, str, str]:
    """`warden ARGS` as a process of its own, on the rig's policy files and database."""
    done = await anyio.run_process(
        [sys.executable, "-m", "warden", *args],
        env={
            **os.environ,
            "WARDEN_POLICY_PATH": str(rig.policy_file),
            "WARDEN_STATE_DIR": str(rig.settings.state_dir),
            "CODER_TOKEN": "coder-token-for-the-cli-0123456789",
            **env,
        },
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_the_command_keeps_a_workspace_alive_and_prints_its_link(rig: AdminRig) -> None:
    ref = rig.ref("bob-idle")
    code, out, _ = await _warden(rig, "keep-alive", ref, "--for", "3h")
    assert code == 0
    assert out.startswith(f"{ref} kept alive until ")
    assert "(idle-dev until " in out
    assert rig.daemon.store is not None
    row = await rig.daemon.store.workspace_row(WorkspaceId.parse(ref))
    assert row is not None
    assert row.kept_alive_by == "cli"
    code, _, err = await _warden(rig, "keep-alive", "coder/no-such-workspace")
    assert (code, "Warden has not seen" in err) == (1, True)
    code, _, err = await _warden(rig, "keep-alive", ref, "--for", "ages")
    assert (code, "`for` expects a number and a unit" in err) == (2, True)
    code, _, err = await _warden(rig, "keep-alive", ref, "--link")
    assert (code, "needs WARDEN_SNOOZE_SECRET" in err) == (2, True)
    code, out, _ = await _warden(
        rig,
        "keep-alive",
        ref,
        "--link",
        WARDEN_SNOOZE_SECRET=SNOOZE_SECRET,
        WARDEN_PUBLIC_URL=PUBLIC_URL,
    )
    assert code == 0
    link = out.strip()
    token = link.removeprefix(f"{PUBLIC_URL}/keep-alive/")
    links = KeepAliveLinks(SNOOZE_SECRET.encode(), PUBLIC_URL)
    assert links.verify(token, now=rig.clock()) == WorkspaceId.parse(ref)
