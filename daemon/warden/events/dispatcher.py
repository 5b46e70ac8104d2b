"""The dispatcher: delivers the event outbox to the sinks, at least once, in order.

It runs as its own task beside the decision loop, which only calls `notify()` after
writing events (a periodic poll catches anything else, such as a replay from the
CLI). Each sink has its own worker, so a slow receiver delays no other sink.

Everything a restart needs is in the database (`store/deliveries.py`): each sink's
cursor over the outbox, each delivery's attempts and next attempt time, the batches
already sent. A crash at any point loses nothing: an attempt whose outcome was not
recorded is made again with the same event id (`webhook-id`), and receivers
de-duplicate. One dispatcher per database: on PostgreSQL, run it on the leader.

Per sink and round: route the new outbox events (cursor → deliveries), take each
subject's first pending delivery that is due, fold them into batches (one message
per (type, policy) for Slack and PagerDuty, after the storm has been quiet for
`group_window`), send, and record: delivered; retried after a backoff with jitter
or the receiver's Retry-After; dead-lettered after `max_attempts` (with a
`warden.event.dead_lettered` event); or, on 410 Gone, the sink disabled (with a
`warden.sink.disabled` event) until `deliveries.enable_sink()`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import aiohttp
import anyio
import anyio.lowlevel
import structlog

from warden.clock import Clock, utc_now
from warden.errors import excerpt
from warden.events import catalogue as ev
from warden.events.envelope import cloud_event, source_for
from warden.events.routing import GROUPING_SINKS, Batch, Routes, plan_batches
from warden.events.sinks import DELIVERED, Attempt, log_events, outbound, send
from warden.leadership import LeaseLapsed
from warden.model import Event
from warden.policy.models import BudgetPolicy, Policy, SinkConfig
from warden.retry import Backoff, Sleep
from warden.store import Store
from warden.store import deliveries as db
from warden.store.deliveries import Queued
from warden.store.lease import Fenced

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    """How hard to try, how long to wait, and how long to let a storm gather."""

    max_attempts: int = 12  # then the event is dead-lettered (after 1 to 2 h by default)
    backoff_base: timedelta = timedelta(seconds=5)  # before the second attempt
    backoff_cap: timedelta = timedelta(minutes=30)
    timeout: timedelta = timedelta(seconds=10)  # per request: a slow receiver is a failure
    poll_interval: timedelta = timedelta(seconds=5)  # look at the outbox without a notify()
    group_window: timedelta = timedelta(seconds=5)  # quiet time before a grouped message
    group_max_wait: timedelta = timedelta(minutes=1)  # a storm that goes on is sent anyway
    batch_size: int = 200  # outbox rows read, deliveries attempted, events per message
    concurrency: int = 8  # requests in flight per sink
    backfill: timedelta = timedelta(hours=1)  # what a newly configured sink is sent
    stop_grace: timedelta = timedelta(seconds=5)  # for rounds under way at stop

    def backoff(
        self, attempts: int, retry_after: timedelta | None, rng: random.Random
    ) -> timedelta:
        """The wait after `attempts` failed attempts: the one retry policy of `warden.retry`,
        exponential from `backoff_base`, never sooner than the receiver's Retry-After."""
        return Backoff(base=self.backoff_base, cap=self.backoff_cap).delay(
            attempts, retry_after, rng
        )


@dataclass(slots=True)
class Round:
    """What one round of one sink did, and when it wants the next."""

    delivered: int = 0
    failed: int = 0
    more: bool = False  # the outbox had more than one page to route
    wake_at: datetime | None = None

    @property
    def progressed(self) -> bool:
        return bool(self.delivered or self.failed or self.more)


class Dispatcher:
    """Delivers the outbox of `store` to the sinks of the policy files.

    `run(stop)` until `stop` is set; `deliver_once(now)` is one round of every sink,
    for tests and `warden run --once`. `configure()` takes the sinks and policies of
    a reloaded policy set; `notify()` says new events are in the outbox.
    """

    def __init__(
        self,
        store: Store,
        *,
        sinks: Mapping[str, SinkConfig],
        policies: Iterable[Policy | BudgetPolicy],
        http: aiohttp.ClientSession,
        clock: Clock = utc_now,
        sleep: Sleep = anyio.sleep,
        source: str = source_for("warden"),
        public_url: str | None = None,
        delivery: DeliveryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._http = http
        self._clock = clock
        self._sleep = sleep
        self._source = source
        self._public_url = public_url
        self._delivery = delivery or DeliveryPolicy()
        self._rng = rng or random.Random()
        self._wakes: dict[str, anyio.Event] = {}
        self._changed: anyio.Event | None = None
        self._stopping = False
        self._routes = Routes.of({}, [])
        self._lease_check: Callable[[], object] = lambda: None
        self.configure(sinks, policies)

    # ------------------------------------------------------------ control

    def configure(
        self, sinks: Mapping[str, SinkConfig], policies: Iterable[Policy | BudgetPolicy]
    ) -> None:
        """Use these sinks and policies from now on (their secrets were checked at load)."""
        self._routes = Routes.of(sinks, policies)
        if self._changed is not None:
            self._changed.set()
        self.notify()

    def notify(self) -> None:
        """New events are in the outbox: wake every sink's worker now."""
        for wake in self._wakes.values():
            wake.set()

    def use_store(self, store: Store) -> None:
        """Deliver through this view of the store from now on: the leader's fenced one,
        so that a replica that lost its lease claims and records nothing."""
        self._store = store

    @property
    def sinks(self) -> Mapping[str, SinkConfig]:
        return self._routes.sinks

    @property
    def routes(self) -> Routes:
        """Which sinks get which events, as configured now."""
        return self._routes

    # ------------------------------------------------------------ running

    async def run(
        self, stop: anyio.Event, *, lease_check: Callable[[], object] = lambda: None
    ) -> None:
        """Deliver until `stop` is set: one worker per sink, following `configure()`.

        At `stop`, rounds under way may finish (their outcomes recorded) within
        `stop_grace`; then what is left is cancelled, to be attempted again next start.
        `lease_check` runs before every send; when it raises (the lease lapsed by this
        replica's clock), or a claim is refused for an old epoch, delivery stops at once.
        """
        self._stopping = False
        self._lease_check = lease_check
        running: dict[str, anyio.Event] = {}  # sink → set when its worker has ended
        async with anyio.create_task_group() as tg:
            while not stop.is_set():
                self._changed = changed = anyio.Event()
                for name in set(self._routes.sinks) - set(running):
                    running[name] = anyio.Event()
                    tg.start_soon(self._worker, name, running[name])
                await _first_of(stop.wait, changed.wait)
                running = {name: ended for name, ended in running.items() if not ended.is_set()}
            self._stopping = True
            self.notify()
            with anyio.move_on_after(self._delivery.stop_grace.total_seconds()):
                for ended in running.values():
                    await ended.wait()
            tg.cancel_scope.cancel()

    async def _worker(self, name: str, ended: anyio.Event) -> None:
        """Rounds of one sink until the dispatcher stops or the sink is removed."""
        try:
            with structlog.contextvars.bound_contextvars(sink=name):
                while not self._stopping and name in self._routes.sinks:
                    wake = self._wakes[name] = anyio.Event()
                    now = self._clock()
                    try:
                        done = await self.deliver_sink(name, now)
                    except (Fenced, LeaseLapsed) as e:  # another replica delivers now
                        log.warning("delivery.fenced", error=str(e))
                        self._stopping = True
                        return
                    except Exception as e:  # a database hiccup must not end delivery
                        error = excerpt(f"{type(e).__name__}: {e}")
                        log.error("delivery.round_failed", error=error)
                        done = Round()
                    if done.progressed:
                        await anyio.lowlevel.checkpoint()
                        continue
                    await _first_of(wake.wait, partial(self._sleep, self._delay(done, now)))
        finally:
            self._wakes.pop(name, None)
            ended.set()

    def _delay(self, done: Round, now: datetime) -> float:
        delay = self._delivery.poll_interval
        if done.wake_at is not None:
            delay = min(delay, max(done.wake_at - now, timedelta(0)))
        return delay.total_seconds()

    async def deliver_once(self, now: datetime | None = None) -> int:
        """One round of every sink at `now`; how many events were delivered."""
        now = now or self._clock()
        rounds: list[Round] = []

        async def one(name: str) -> None:
            rounds.append(await self.deliver_sink(name, now))

        async with anyio.create_task_group() as tg:
            for name in self._routes.sinks:
                tg.start_soon(one, name)
        return sum(r.delivered for r in rounds)

    # ------------------------------------------------------------ one sink, one round

    async def deliver_sink(self, name: str, now: datetime) -> Round:
        """Route new events to the sink called `name`, then attempt what is due."""
        sink = self._routes.sinks.get(name)
        done = Round()
        if sink is None:
            return done
        state = await db.sink_state(self._store, name, start_after=now - self._delivery.backfill)
        if state.disabled:
            return done
        done.more = await self._route(name, sink, state.last_seq, now)
        queued = await db.due(self._store, name, now=now, limit=self._delivery.batch_size)
        release_at = None
        if sink.type in GROUPING_SINKS:
            queued, release_at = await self._gather_storm(name, queued, now)
        batches = plan_batches(sink.type, queued, limit=self._delivery.batch_size)
        limiter = anyio.CapacityLimiter(self._delivery.concurrency)
        async with anyio.create_task_group() as tg:
            for batch in batches:
                tg.start_soon(self._deliver, name, sink, batch, now, done, limiter)
        later = await db.next_attempt_after(self._store, name, now)
        done.wake_at = min((t for t in (later, release_at) if t is not None), default=None)
        return done

    async def _route(self, name: str, sink: SinkConfig, last_seq: int, now: datetime) -> bool:
        """Queue the sink's share of the next page of the outbox; True if there is more."""
        page = await self._store.events_after(last_seq, limit=self._delivery.batch_size)
        if not page:
            return False
        first_attempt = now + (
            self._delivery.group_window if sink.type in GROUPING_SINKS else timedelta(0)
        )
        wanted = [(s, first_attempt) for s in page if self._routes.wants(name, s.event())]
        moved = await db.route(
            self._store, name, after_seq=last_seq, through_seq=page[-1].seq, queued=wanted
        )
        return moved and len(page) == self._delivery.batch_size

    async def _gather_storm(
        self, name: str, queued: list[Queued], now: datetime
    ) -> tuple[list[Queued], datetime | None]:
        """Hold new deliveries of a grouping sink while events keep arriving.

        Returns what may go now and, when something is held, when it will be released:
        once no new event came for `group_window`, or `group_max_wait` after the first.
        """
        since = now - self._delivery.group_max_wait
        window = await db.unbatched_window(self._store, name, since=since)
        if window is None:
            return queued, None
        first, last = window
        release_at = min(last, first - self._delivery.group_window + self._delivery.group_max_wait)
        if now >= release_at:
            return queued, None
        return [q for q in queued if q.batch is not None], release_at

    async def _deliver(
        self,
        name: str,
        sink: SinkConfig,
        batch: Batch[Queued],
        now: datetime,
        done: Round,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        seqs = [q.seq for q in batch.items]
        async with limiter:
            if batch.is_new:
                await db.record_batch(self._store, name, seqs, batch.id)
            events = [
                cloud_event(e, source=self._source, public_url=self._public_url)
                for e in batch.events
            ]
            request = outbound(sink, events, now=now)
            self._lease_check()  # never send as a leader whose lease has lapsed
            if request is None:
                log_events(name, events)
                attempt = DELIVERED
            else:
                attempt = await send(
                    self._http, request, time_limit=self._delivery.timeout, now=now
                )
        await self._record(name, sink, batch, attempt, now, done)

    async def _record(
        self,
        name: str,
        sink: SinkConfig,
        batch: Batch[Queued],
        attempt: Attempt,
        now: datetime,
        done: Round,
    ) -> None:
        seqs = [q.seq for q in batch.items]
        if attempt.ok:
            await db.mark_delivered(self._store, name, seqs, now=now)
            done.delivered += len(seqs)
            log.debug("delivery.delivered", batch=batch.id, events=len(seqs))
            return
        done.failed += len(seqs)
        error = attempt.error or "failed"
        if attempt.gone:
            await self._disable(name, sink, error, now, seqs)
            return
        attempts = max(q.attempts for q in batch.items) + 1
        retry_at = now + self._delivery.backoff(attempts, attempt.retry_after, self._rng)
        dead = [q for q in batch.items if q.attempts + 1 >= self._delivery.max_attempts]
        dead_seqs = {q.seq for q in dead}
        reports = [dead_letter_event(name, q, error, now) for q in dead]
        await db.record_failure(
            self._store,
            name,
            now=now,
            error=error,
            retry=[seq for seq in seqs if seq not in dead_seqs],
            retry_at=retry_at,
            dead=[q.seq for q in dead],
            events=reports,
        )
        log.warning(
            "delivery.failed",
            batch=batch.id,
            events=len(seqs),
            attempts=attempts,
            error=error,
            retry_at=retry_at.isoformat(),
            dead_lettered=len(dead),
        )
        if reports:
            self.notify()

    async def _disable(
        self, name: str, sink: SinkConfig, error: str, now: datetime, seqs: list[int]
    ) -> None:
        event = ev.new_event(
            ev.SINK_DISABLED,
            f"sinks/{name}",
            now=now,
            data={"sink": name, "sink_type": sink.type, "status": 410, "reason": error},
        )
        await db.disable_sink(self._store, name, reason=error, now=now, seqs=seqs, events=[event])
        log.error("sink.disabled", error=error)
        self.notify()


def dead_letter_event(sink: str, queued: Queued, error: str, now: datetime) -> Event:
    """The report that `sink` gave up on one event; its subject is the event's own."""
    return ev.new_event(
        ev.EVENT_DEAD_LETTERED,
        queued.event.subject,
        now=now,
        data={
            "sink": sink,
            "event_id": queued.event.id,
            "event_type": queued.event.type,
            "subject": queued.event.subject,
            "attempts": queued.attempts + 1,
            "error": error,
        },
    )


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of `waits` returns; cancel the others."""
    async with anyio.create_task_group() as tg:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)
