"""Delivery from the outbox to real receivers on 127.0.0.1: retries, dead letters,
410 Gone, order per subject, restarts, routing, storms, PagerDuty incidents, Slack.

Time is a ManualClock that `deliver_once(now)` is driven with; the receivers are the
independent ones in `tests/receivers.py`. The store is a SQLite file, and PostgreSQL
for the tests that take the `store` fixture with its postgres case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from tests.conftest import POSTGRES_URL
from tests.events_rig import (
    PUBLIC_URL,
    SECRET,
    check_schema,
    open_store,
    recovered,
    served,
    stopped,
    unreachable,
    warned,
)
from tests.receivers import Answer, PagerDutyReceiver, SlackReceiver, WebhookReceiver
from tests.test_store_postgres import fresh_schema
from warden.clock import ManualClock
from warden.events import catalogue as ev
from warden.events.dispatcher import DeliveryPolicy, Dispatcher
from warden.model import Event
from warden.policy.models import Policy, SinkConfig
from warden.store import Store, deliveries

SINK = TypeAdapter(SinkConfig)
S = timedelta(seconds=1)
FAST = DeliveryPolicy(
    max_attempts=4,
    backoff_base=timedelta(seconds=10),
    backoff_cap=timedelta(minutes=5),
    timeout=timedelta(seconds=5),
    group_window=timedelta(seconds=5),
    group_max_wait=timedelta(minutes=1),
)


def policy(name: str = "idle-dev", notify: list[str] | None = None) -> Policy:
    return Policy.model_validate({"name": name, "when": {"idle_for": "2h"}, "notify": notify or []})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
        yield opened
        await opened.aclose()
    else:
        async with fresh_schema() as schema:
            opened = await open_store(POSTGRES_URL, schema)
            yield opened
            await opened.aclose()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
    yield opened
    await opened.aclose()


@pytest.fixture
def now_clock() -> ManualClock:
    """A clock at the real time: strict receivers check timestamps against it."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@dataclass
class Rig:
    store: Store
    clock: ManualClock
    http: aiohttp.ClientSession
    urls: dict[str, str] = field(default_factory=dict)

    def dispatcher(
        self,
        sinks: dict[str, dict[str, Any]],
        policies: list[Policy] = (),  # type: ignore[assignment]
        delivery: DeliveryPolicy = FAST,
        **options: Any,
    ) -> Dispatcher:
        return Dispatcher(
            self.store,
            sinks={name: SINK.validate_python(config) for name, config in sinks.items()},
            policies=policies,
            http=self.http,
            clock=self.clock,
            delivery=delivery,
            **options,
        )

    async def write(self, *events: Event) -> list[Event]:
        await self.store.add_events(events)
        return list(events)

    async def outbox(self, type_: str | None = None) -> list[Event]:
        found = [s.event() for s in await self.store.events_after(0, limit=10_000)]
        return [e for e in found if type_ is None or e.type == type_]

    async def round(self, dispatcher: Dispatcher, **advance: float) -> int:
        if advance:
            self.clock.advance(**advance)
        return await dispatcher.deliver_once(self.clock())


@pytest.fixture
async def rig(store: Store, now_clock: ManualClock) -> AsyncIterator[Rig]:
    async with aiohttp.ClientSession() as http:
        yield Rig(store, now_clock, http)


@pytest.fixture
async def strict_hook() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A receiver that also checks timestamps against the real clock."""
    receiver = WebhookReceiver(SECRET, strict=True)
    async with served(receiver.app()) as url:
        yield receiver, url


@pytest.fixture
async def hook() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    receiver = WebhookReceiver(SECRET)
    async with served(receiver.app()) as url:
        yield receiver, url
        assert receiver.bad_signatures == 0


@pytest.fixture
async def hook2() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    receiver = WebhookReceiver(SECRET)
    async with served(receiver.app()) as url:
        yield receiver, url
        assert receiver.bad_signatures == 0


def webhook(url: str, **more: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "secret": SECRET} | more


# ---------------------------------------------------------------- webhooks


async def test_every_event_arrives_once_as_a_signed_cloudevent(rig: Rig, strict_hook) -> None:
    """Each event is one request with a valid Standard Webhooks signature."""
    receiver, url = strict_hook
    events = await rig.write(*(stopped(f"ws-{i}", rig.clock()) for i in range(3)))
    dispatcher = rig.dispatcher({"audit": webhook(url)}, source="warden://replica-1")
    assert await rig.round(dispatcher) == 3
    assert receiver.bad_signatures == 0
    assert sorted(receiver.accepted) == sorted(e.id for e in events)
    body = receiver.accepted[events[0].id]
    assert body["specversion"] == "1.0"
    assert body["source"] == "warden://replica-1"
    assert (body["type"], body["subject"]) == (ev.WORKSPACE_STOPPED, "coder-prod/ws-0")
    assert body["data"]["policy"] == "idle-dev"
    assert receiver.requests[0]["headers"]["Content-Type"].startswith(
        "application/cloudevents+json"
    )
    assert await rig.round(dispatcher) == 0  # nothing twice


@pytest.mark.parametrize(
    "failure",
    [
        Answer(status=500),
        Answer(status=503),
        Answer(status=400),
        Answer(status=404),
        Answer(close=True),
    ],
    ids=["500", "503", "400", "404", "connection-closed"],
)
async def test_a_failed_attempt_is_retried_later_with_the_same_id(rig: Rig, hook, failure) -> None:
    """Not before the backoff; then again, under the same webhook-id, and accepted once."""
    receiver, url = hook
    receiver.fail_next(failure)
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    dispatcher = rig.dispatcher({"audit": webhook(url)})
    assert await rig.round(dispatcher) == 0
    assert await rig.round(dispatcher, seconds=9.9) == 0  # never before the 10 s step
    assert await rig.round(dispatcher, seconds=2.1) == 1  # jitter: at most 20% longer
    assert receiver.arrivals[event.id] == 2
    assert list(receiver.accepted) == [event.id]
    assert await deliveries.delivery_of(rig.store, "audit", event.id) == ("delivered", 2)


async def test_retry_after_sets_the_next_attempt(rig: Rig, hook) -> None:
    """A 429 with Retry-After: 120 is tried again after 120 s, not at the backoff."""
    receiver, url = hook
    receiver.fail_next(Answer(status=429, headers={"Retry-After": "120"}))
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    dispatcher = rig.dispatcher({"audit": webhook(url)})
    await rig.round(dispatcher)
    assert await rig.round(dispatcher, seconds=119) == 0
    assert await rig.round(dispatcher, seconds=1) == 1
    assert receiver.arrivals[event.id] == 2


async def test_a_receiver_that_does_not_answer_in_time_is_retried(rig: Rig, hook) -> None:
    """A request held past the timeout counts as failed; the retry is delivered."""
    receiver, url = hook
    release = anyio.Event()
    receiver.fail_next(Answer(hold=release))
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    # A second: the retry must answer within it even on a busy 2-core machine (at
    # 200 ms it once timed out under load, as the held first attempt should).
    slow = DeliveryPolicy(timeout=timedelta(seconds=1), backoff_base=timedelta(seconds=10))
    dispatcher = rig.dispatcher({"audit": webhook(url)}, delivery=slow)
    assert await rig.round(dispatcher) == 0
    release.set()
    assert await rig.round(dispatcher, seconds=12) == 1
    assert list(receiver.accepted) == [event.id]


async def test_after_the_attempt_limit_an_event_is_dead_lettered_and_can_be_replayed(
    rig: Rig, hook
) -> None:
    """Four failures: dead, listed with the error, reported; a replay delivers it."""
    receiver, url = hook
    receiver.fail_next(*[Answer(status=500)] * 4)
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    dispatcher = rig.dispatcher({"audit": webhook(url)})
    for _ in range(4):
        await rig.round(dispatcher, minutes=10)
    [dead] = await deliveries.dead_letters(rig.store)
    assert (dead.sink, dead.event_id, dead.attempts) == ("audit", event.id, 4)
    assert dead.last_error is not None
    assert "HTTP 500" in dead.last_error
    [report] = await rig.outbox(ev.EVENT_DEAD_LETTERED)
    assert report.data["event_id"] == event.id
    assert report.data["sink"] == "audit"
    check_schema(report)
    assert await rig.round(dispatcher, minutes=10) == 0  # dead stays dead
    assert await deliveries.replay(rig.store, now=rig.clock(), sink="audit") == 1
    assert await rig.round(dispatcher) == 1
    assert list(receiver.accepted) == [event.id]
    assert await deliveries.dead_letters(rig.store) == []


async def test_a_dead_letter_report_goes_to_the_other_sinks_not_the_failing_one(
    rig: Rig, hook, hook2
) -> None:
    """Telling a sink that cannot receive about its own failures would never end."""
    failing, failing_url = hook
    other, other_url = hook2
    failing.fail_next(Answer(status=500))
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    one_try = DeliveryPolicy(max_attempts=1)
    sinks = {"a": webhook(failing_url), "b": webhook(other_url)}
    dispatcher = rig.dispatcher(sinks, delivery=one_try)
    await rig.round(dispatcher)
    await rig.round(dispatcher)
    types = [body["type"] for body in other.accepted.values()]
    assert types == [ev.WORKSPACE_STOPPED, ev.EVENT_DEAD_LETTERED]
    assert failing.accepted == {}
    assert failing.arrivals[event.id] == 1


async def test_410_gone_disables_the_sink_for_good_and_says_so(rig: Rig, hook, hook2) -> None:
    """The sink stops (persisted across a restart), other sinks hear of it, and enabling
    it again delivers what waited."""
    gone, gone_url = hook
    other, other_url = hook2
    gone.fail_next(Answer(status=410))
    [first] = await rig.write(stopped("ws-1", rig.clock()))
    sinks = {"gone": webhook(gone_url), "other": webhook(other_url)}
    await rig.round(rig.dispatcher(sinks))
    [state] = [s for s in await deliveries.sink_states(rig.store) if s.sink == "gone"]
    assert state.disabled
    assert state.reason is not None
    assert "410" in state.reason
    [report] = await rig.outbox(ev.SINK_DISABLED)
    check_schema(report)
    assert report.data == {
        "sink": "gone",
        "sink_type": "webhook",
        "status": 410,
        "reason": state.reason,
    }
    [second] = await rig.write(stopped("ws-2", rig.clock()))
    restarted = rig.dispatcher(sinks)
    await rig.round(restarted, seconds=1)
    assert gone.arrivals[first.id] == 1
    assert second.id not in gone.arrivals
    assert set(other.accepted) == {first.id, report.id, second.id}
    assert await deliveries.enable_sink(rig.store, "gone")
    await rig.round(restarted, seconds=1)
    assert set(gone.accepted) == {first.id, second.id}


async def test_order_is_kept_per_subject(rig: Rig, hook) -> None:
    """A later event about a workspace waits for the earlier one; others go on."""
    receiver, url = hook
    first, other, second = await rig.write(
        warned("ws-1", rig.clock()), stopped("ws-2", rig.clock()), stopped("ws-1", rig.clock())
    )
    receiver.fail_id(first.id, Answer(status=500))
    dispatcher = rig.dispatcher({"audit": webhook(url)})
    assert await rig.round(dispatcher) == 1
    assert receiver.order == [other.id]
    assert await rig.round(dispatcher, seconds=12) == 1
    assert await rig.round(dispatcher) == 1
    assert receiver.order == [other.id, first.id, second.id]


async def test_a_restarted_dispatcher_continues_where_the_last_one_stopped(rig: Rig, hook) -> None:
    """Cursor, attempts and backoff are in the database: nothing is sent twice or lost."""
    receiver, url = hook
    receiver.fail_next(Answer(status=500))
    events = await rig.write(*(stopped(f"ws-{i}", rig.clock()) for i in range(3)))
    assert await rig.round(rig.dispatcher({"audit": webhook(url)})) == 2
    more = await rig.write(stopped("ws-9", rig.clock()))
    restarted = rig.dispatcher({"audit": webhook(url)})
    assert await rig.round(restarted) == 1  # the new one; the failed one waits its backoff
    assert await rig.round(restarted, seconds=12) == 1
    assert sorted(receiver.accepted) == sorted(e.id for e in events + more)
    assert receiver.duplicates == 0


async def test_a_new_sink_gets_recent_events_not_the_whole_history(rig: Rig, hook) -> None:
    """A sink added to the policy files starts `backfill` before its first round."""
    receiver, url = hook
    [old] = await rig.write(stopped("ws-old", rig.clock() - timedelta(hours=2)))
    [recent] = await rig.write(stopped("ws-new", rig.clock() - timedelta(minutes=5)))
    await rig.round(rig.dispatcher({"audit": webhook(url)}))
    assert list(receiver.accepted) == [recent.id]
    assert old.id not in receiver.arrivals


async def test_an_unusable_signing_secret_is_refused_when_configured(rig: Rig) -> None:
    """A secret that is not whsec_<base64> could never be verified: refused at load."""
    with pytest.raises(ValueError, match="whsec_"):
        rig.dispatcher({"audit": webhook("http://127.0.0.1:9", secret="hunter2-hunter2")})


# ---------------------------------------------------------------- routing


async def test_events_go_to_the_policys_sinks_and_the_rest_to_every_sink(
    rig: Rig, hook, hook2
) -> None:
    """notify chooses for policy events; provider events go to all that admit them."""
    team, team_url = hook
    oncall, oncall_url = hook2
    sinks = {"team": webhook(team_url), "oncall": webhook(oncall_url, min_severity="critical")}
    policies = [policy("idle-dev", ["team"]), policy("quiet")]
    mine, silent, down = await rig.write(
        stopped("ws-1", rig.clock()),
        stopped("ws-2", rig.clock(), policy="quiet"),
        unreachable("coder-prod", rig.clock()),
    )
    await rig.round(rig.dispatcher(sinks, policies))
    assert set(team.accepted) == {mine.id, down.id}
    assert set(oncall.accepted) == {down.id}
    assert silent.id not in team.arrivals | oncall.arrivals


async def test_an_incidents_end_reaches_every_sink_told_of_its_start(rig: Rig, hook) -> None:
    """`recovered` is info, but a critical-only sink told of `unreachable` gets it."""
    receiver, url = hook
    down, up = await rig.write(
        unreachable("coder-prod", rig.clock()), recovered("coder-prod", rig.clock())
    )
    dispatcher = rig.dispatcher({"oncall": webhook(url, min_severity="critical")})
    await rig.round(dispatcher)
    await rig.round(dispatcher)
    assert receiver.order == [down.id, up.id]


# ---------------------------------------------------------------- storms, Slack, PagerDuty


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackReceiver, str]]:
    receiver = SlackReceiver()
    async with served(receiver.app()) as url:
        yield receiver, url + receiver.path


@pytest.fixture
async def pagerduty() -> AsyncIterator[tuple[PagerDutyReceiver, str]]:
    receiver = PagerDutyReceiver("R0UTINGKEY")
    async with served(receiver.app()) as url:
        yield receiver, url + receiver.path


def chat(url: str) -> dict[str, Any]:
    return {"type": "slack", "url": url}


def pager(url: str, **more: Any) -> dict[str, Any]:
    return {"type": "pagerduty", "url": url, "routing_key": "R0UTINGKEY"} | more


async def test_a_storm_is_one_message_for_chat_and_pager_and_one_event_each_for_webhooks(
    rig: Rig, hook, slack, pagerduty
) -> None:
    """Thirty stops by one policy in one cycle: one Slack message, one incident."""
    receiver, url = hook
    chat_receiver, chat_url = slack
    pd, pd_url = pagerduty
    storm = [stopped(f"ws-{i:02}", rig.clock()) for i in range(30)]
    lone = stopped("ws-x", rig.clock(), policy="max-lifetime")
    await rig.write(*storm, lone)
    sinks = {"audit": webhook(url), "chat": chat(chat_url), "oncall": pager(pd_url)}
    policies = [policy("idle-dev", ["audit", "chat", "oncall"]), policy("max-lifetime", ["chat"])]
    dispatcher = rig.dispatcher(sinks, policies)
    assert await rig.round(dispatcher) == 30  # webhook: at once, one by one
    assert chat_receiver.messages == []
    assert pd.log == []
    assert await rig.round(dispatcher, seconds=5) == 30 + 30 + 1
    assert len(receiver.accepted) == 30
    grouped, single = sorted(chat_receiver.texts(), key=len, reverse=True)
    assert "Stopped 30 workspaces (policy idle-dev)" in grouped
    assert "coder-prod/ws-00" in grouped
    assert "…and 10 more" in grouped
    assert "Stopped coder-prod/ws-x" in single
    assert pd.log == [("trigger", "warden/workspace-stopped/policy/idle-dev")]
    assert pd.bodies[0]["payload"]["custom_details"]["count"] == 30


async def test_a_storm_that_keeps_coming_is_gathered_until_it_is_quiet(rig: Rig, slack) -> None:
    """Events written over several seconds still make one message."""
    chat_receiver, chat_url = slack
    dispatcher = rig.dispatcher({"chat": chat(chat_url)}, [policy("idle-dev", ["chat"])])
    for i in range(4):
        await rig.write(stopped(f"ws-{i}", rig.clock()))
        assert await rig.round(dispatcher, seconds=3) == 0
    assert await rig.round(dispatcher, seconds=5) == 4
    assert len(chat_receiver.messages) == 1


async def test_a_storm_that_never_stops_is_sent_after_the_longest_wait(rig: Rig, slack) -> None:
    """Storm control delays messages; it never withholds them."""
    chat_receiver, chat_url = slack
    dispatcher = rig.dispatcher({"chat": chat(chat_url)}, [policy("idle-dev", ["chat"])])
    delivered = 0
    for i in range(30):  # one event every 3 s, for 90 s
        await rig.write(stopped(f"ws-{i}", rig.clock()))
        delivered += await rig.round(dispatcher, seconds=3)
    assert 0 < delivered < 30
    assert len(chat_receiver.messages) >= 1


async def test_pagerduty_triggers_and_resolves_an_outage_with_one_dedup_key(
    rig: Rig, pagerduty
) -> None:
    """provider.unreachable opens warden/provider-unreachable/<provider>; recovered ends it."""
    pd, pd_url = pagerduty
    dispatcher = rig.dispatcher({"oncall": pager(pd_url, min_severity="critical")})
    await rig.write(unreachable("coder-prod", rig.clock()), unreachable("mage", rig.clock()))
    await rig.round(dispatcher)
    await rig.round(dispatcher, seconds=5)
    await rig.write(recovered("coder-prod", rig.clock()))
    await rig.round(dispatcher)
    await rig.round(dispatcher, seconds=5)
    key, other = "warden/provider-unreachable/coder-prod", "warden/provider-unreachable/mage"
    assert sorted(pd.log[:2]) == [("trigger", key), ("trigger", other)]
    assert pd.log[2:] == [("resolve", key)]
    assert pd.incidents == {key: "resolved", other: "triggered"}
    trigger = next(b for b in pd.bodies if b["dedup_key"] == key)
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["component"] == "coder-prod"


async def test_a_retried_group_is_the_same_group(rig: Rig, pagerduty) -> None:
    """After a failure the group is resent as it was, even if more events came."""
    pd, pd_url = pagerduty
    pd.fail_next(Answer(status=502))
    sinks = {"oncall": pager(pd_url)}
    dispatcher = rig.dispatcher(sinks, [policy("idle-dev", ["oncall"])])
    await rig.write(*(stopped(f"ws-{i}", rig.clock()) for i in range(3)))
    await rig.round(dispatcher)
    assert await rig.round(dispatcher, seconds=5) == 0  # the group of three fails
    await rig.write(*(stopped(f"ws-{i}", rig.clock()) for i in range(3, 5)))
    await rig.round(dispatcher)
    assert await rig.round(dispatcher, seconds=12) == 5
    failed, *sent = pd.requests
    assert failed["payload"]["custom_details"]["count"] == 3
    counts = sorted(body["payload"]["custom_details"]["count"] for body in sent)
    assert counts == [2, 3]


async def test_a_slack_warning_says_what_why_when_and_how_to_snooze(rig: Rig, slack) -> None:
    chat_receiver, chat_url = slack
    snooze = f"{PUBLIC_URL}/snooze/abc.def"
    await rig.write(
        warned("ws-1", rig.clock(), links={"snooze": snooze}, snooze={"by": "1h", "max": 2})
    )
    dispatcher = rig.dispatcher(
        {"chat": chat(chat_url)}, [policy("idle-dev", ["chat"])], public_url=PUBLIC_URL
    )
    await rig.round(dispatcher)
    await rig.round(dispatcher, seconds=5)
    [text] = chat_receiver.texts()
    due = rig.clock() - 5 * S + timedelta(minutes=15)
    assert "coder-prod/ws-1 will be stopped" in text
    assert "Policy: `idle-dev`" in text
    assert "Why: idle_for 2h5m ≥ 2h" in text
    assert f"When: {due:%Y-%m-%d %H:%M} UTC (in 14m55s)" in text
    assert f"<{snooze}|Snooze 1h>" in text
    assert f"<{PUBLIC_URL}/v1/workspaces/coder-prod/ws-1/explain|" in text


async def test_the_slack_url_never_appears_in_a_recorded_error(rig: Rig) -> None:
    """The incoming-webhook URL carries its token: errors name neither."""
    secret_url = "http://127.0.0.1:9/services/T0/B0/very-secret-token"
    await rig.write(stopped("ws-1", rig.clock()))
    dispatcher = rig.dispatcher(
        {"chat": chat(secret_url)},
        [policy("idle-dev", ["chat"])],
        delivery=DeliveryPolicy(max_attempts=1, group_window=timedelta(0)),
    )
    await rig.round(dispatcher)
    [dead] = await deliveries.dead_letters(rig.store)
    assert dead.last_error
    assert "very-secret-token" not in dead.last_error


async def test_the_log_sink_writes_one_line_per_event(rig: Rig) -> None:
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    dispatcher = rig.dispatcher({"audit-log": {"type": "log"}})
    with capture_logs() as logs:
        assert await rig.round(dispatcher) == 1
    [line] = [entry for entry in logs if entry["event"] == "event.logged"]
    assert line["event_id"] == event.id
    assert line["sink"] == "audit-log"
    assert line["data"]["workspace"] == "coder-prod/ws-1"


# ---------------------------------------------------------------- running


async def test_run_delivers_when_notified_and_stops_when_told(rig: Rig, hook) -> None:
    """No poll for an hour: only notify() can have woken it."""
    receiver, url = hook
    rig.clock.set(datetime.now(UTC))
    idle = DeliveryPolicy(poll_interval=timedelta(hours=1))
    dispatcher = rig.dispatcher({"audit": webhook(url)}, delivery=idle)
    stop = anyio.Event()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run, stop)
            [event] = await rig.write(stopped("ws-1", rig.clock()))
            dispatcher.notify()
            await receiver.wait_until(lambda: event.id in receiver.accepted)
            stop.set()


async def test_a_receiver_that_hangs_delays_no_other_sink(rig: Rig, hook, hook2) -> None:
    """Each sink has its own worker: one held request blocks only its own sink."""
    stuck, stuck_url = hook
    fine, fine_url = hook2
    release = anyio.Event()
    stuck.fail_next(Answer(hold=release))
    idle = DeliveryPolicy(poll_interval=timedelta(hours=1), timeout=timedelta(minutes=1))
    dispatcher = rig.dispatcher({"a": webhook(stuck_url), "b": webhook(fine_url)}, delivery=idle)
    stop = anyio.Event()
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run, stop)
            await stuck.holding.wait()
            await fine.wait_until(lambda: event.id in fine.accepted)
            assert event.id not in stuck.accepted
            release.set()
            await stuck.wait_until(lambda: event.id in stuck.accepted)
            stop.set()


async def test_a_sink_added_by_a_reload_starts_delivering(rig: Rig, hook, hook2) -> None:
    first, first_url = hook
    second, second_url = hook2
    idle = DeliveryPolicy(poll_interval=timedelta(hours=1))
    dispatcher = rig.dispatcher({"a": webhook(first_url)}, delivery=idle)
    stop = anyio.Event()
    [event] = await rig.write(stopped("ws-1", rig.clock()))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run, stop)
            await first.wait_until(lambda: event.id in first.accepted)
            dispatcher.configure(
                {
                    name: SINK.validate_python(webhook(url))
                    for name, url in {"a": first_url, "b": second_url}.items()
                },
                [],
            )
            await second.wait_until(lambda: event.id in second.accepted)
            stop.set()


async def test_a_database_failure_does_not_end_the_worker(
    sqlite_store: Store, hook, now_clock
) -> None:
    """A round that fails is logged, and the worker waits and tries again."""
    receiver, url = hook
    waiting = anyio.Event()

    async def parked(_seconds: float) -> None:  # the worker's wait, made visible
        waiting.set()
        await anyio.sleep_forever()

    async with aiohttp.ClientSession() as http:
        rig = Rig(sqlite_store, now_clock, http)
        [event] = await rig.write(stopped("ws-1", rig.clock()))
        dispatcher = rig.dispatcher({"audit": webhook(url)}, sleep=parked)
        async with sqlite_store.engine.begin() as conn:  # delivery state vanishes a while
            await conn.exec_driver_sql("ALTER TABLE sink_states RENAME TO sink_states_away")
        stop = anyio.Event()
        with anyio.fail_after(10), capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(dispatcher.run, stop)
                await waiting.wait()
                assert [e["event"] for e in logs] == ["delivery.round_failed"]
                async with sqlite_store.engine.begin() as conn:
                    await conn.exec_driver_sql("ALTER TABLE sink_states_away RENAME TO sink_states")
                dispatcher.notify()
                await receiver.wait_until(lambda: event.id in receiver.accepted)
                stop.set()
