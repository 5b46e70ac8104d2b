"""Rail holds through the admin API and the CLI: list them (reader), release one (admin),
the release recorded as an event; a held policy then acts."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.admin_rig import ADMIN_TOKEN, READ_TOKEN, AdminRig, admin_rig
from warden.clock import ManualClock
from warden.events import catalogue as ev
from warden.store import episodes as ep


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock) as rig:
        yield rig


async def hold(rig: AdminRig) -> None:
    store = rig.daemon.store
    assert store is not None
    held = ep.Hold(
        provider="coder",
        policy="idle-dev",
        since=rig.clock(),
        reason="40 stops or resumes in one cycle exceed the limit of 5",
        wanted=40,
        allowed=5,
    )
    await ep.begin_holds(store, [held], [])


async def test_a_reader_lists_holds_and_only_an_admin_releases_them(rig: AdminRig) -> None:
    await hold(rig)
    status, body, _ = await rig.call("GET", "/v1/holds", token=READ_TOKEN)
    assert status == 200
    [listed] = body["items"]
    assert (listed["policy"], listed["wanted"], listed["released_at"]) == ("idle-dev", 40, None)
    path = "/v1/holds/coder/idle-dev/release"
    assert (await rig.call("POST", path, token=READ_TOKEN))[0] == 403
    status, body, _ = await rig.call("POST", path, token=ADMIN_TOKEN, json={"by": "on-call"})
    assert (status, body["released_by"]) == (200, "admin: on-call")
    assert (await rig.call("POST", path, token=ADMIN_TOKEN))[0] == 404  # released already
    assert (await rig.call("POST", "/v1/holds/coder/nope/release", token=ADMIN_TOKEN))[0] == 404
    store = rig.daemon.store
    assert store is not None
    released = [e for e in await store.events_after(0) if e.type == ev.ACTION_RELEASED]
    assert [e.data["released_by"] for e in released] == ["admin: on-call"]
    status, body, _ = await rig.call("GET", "/v1/holds", token=READ_TOKEN)
    assert body["items"][0]["released_by"] == "admin: on-call"


async def test_a_release_body_that_is_not_what_it_takes_is_a_400(rig: AdminRig) -> None:
    await hold(rig)
    path = "/v1/holds/coder/idle-dev/release"
    assert (await rig.call("POST", path, json={"who": "x"}))[0] == 400
    assert (await rig.call("POST", path, data=b"[" * 5000))[0] == 400
    assert (await rig.call("POST", "/v1/holds/CODER!/idle-dev/release"))[0] == 400


async def test_the_cli_lists_and_releases_a_hold(
    rig: AdminRig, capsys: pytest.CaptureFixture[str]
) -> None:
    from warden.commands import holds

    await hold(rig)
    listing = argparse.Namespace(holds_command=None, json=False)
    assert await holds(rig.settings, listing) == 0
    assert "idle-dev" in capsys.readouterr().out
    release = argparse.Namespace(
        holds_command="release", provider="coder", policy="idle-dev", by="alice", json=False
    )
    assert await holds(rig.settings, release) == 0
    assert "released: coder idle-dev (by cli: alice)" in capsys.readouterr().out
    assert await holds(rig.settings, release) == 1  # nothing left to release
