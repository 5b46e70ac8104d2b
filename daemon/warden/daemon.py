"""The daemon: wiring and timing. What one cycle does lives in `warden.cycle`.

It owns the store, the HTTP session, the providers, the lease, the dispatcher and the
scheduler, and it decides only *when* things run: a poll job per provider, an
exact-time cycle for what falls due between polls, schedule edges, spend feeds, the
policy-file watch and the lease renewal. `run_cycle(now)` runs the pipeline for every
provider (tests, `warden run --once`); `serve()` runs until SIGTERM.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import SecretStr

from warden import __version__
from warden.actuator import Actuator
from warden.budget.keeper import BudgetKeeper
from warden.clock import Clock, utc_now
from warden.cycle import CycleResult, Pipeline, ProviderStatus
from warden.digests import send_digests
from warden.errors import excerpt
from warden.events import catalogue as ev
from warden.events.dispatcher import Dispatcher
from warden.events.envelope import source_for
from warden.events.keepalive import KeepAliveLinks, keep_alive_routes
from warden.events.snooze import SnoozeLinks, WarningLinks, snooze_routes
from warden.leadership import Leadership
from warden.logging import REDACTOR
from warden.metrics import Metrics
from warden.model import WorkspaceId
from warden.policy.decide import Rules
from warden.policy.loader import (
    PolicyError,
    PolicySet,
    load_policies,
    policy_fingerprint,
    snapshot_mtimes,
)
from warden.policy.schedule import next_edge
from warden.providers.base import Provider
from warden.providers.client import Clocks
from warden.providers.registry import build_provider, capability_names
from warden.retry import Sleep
from warden.sdnotify import Notifier
from warden.server import serve_admin
from warden.settings import Settings, policy_environment
from warden.shards import Shards
from warden.spend.feeds import FeedPoller
from warden.store import Store
from warden.store.lease import Fence

log = structlog.get_logger(__name__)

LEASE = "warden-leader"
LEASE_TTL = timedelta(seconds=30)  # the default of WARDEN_LEASE_TTL
SHUTDOWN_GRACE = 8.0  # seconds for in-flight actions at SIGTERM: systemd waits 10
WATCH_INTERVAL = 2.0  # seconds between checks of the policy files' mtimes
DIGEST_CHECK = 60.0  # seconds between looks at whether an owner digest is due
STALLED_TRANSACTION = timedelta(seconds=10)  # a transaction idle this long is a paused replica

__all__ = ["LEASE", "LEASE_TTL", "CycleResult", "Daemon", "ProviderStatus", "load_policy_set"]


def load_policy_set(settings: Settings, env: Mapping[str, str] | None = None) -> PolicySet:
    """Read the policy files named in the settings (PolicyError when they are bad)."""
    env = policy_environment(os.environ if env is None else env)
    policies = load_policies(settings.policy_path, env=env, capabilities=capability_names())
    REDACTOR.add(secret_values(policies))
    return policies


def secret_values(policies: PolicySet) -> list[str]:
    """Every secret the policy files hold (tokens, keys, signing secrets), for masking."""
    configs = [
        *policies.providers.values(),
        *policies.sinks.values(),
        *policies.spend_feeds.values(),
    ]
    return [
        value.get_secret_value()
        for config in configs
        for value in vars(config).values()
        if isinstance(value, SecretStr)
    ]


def rules_of(policies: PolicySet) -> Rules:
    return Rules(policies.policies, policies.schedules, policies.settings)


class InFlight:
    """Counts the store-using jobs that are running, so that a shutdown can wait for
    them: a job cut off mid-write would answer a store (or loop) already closed."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = anyio.Event()
        self._idle.set()

    @asynccontextmanager
    async def job(self) -> AsyncIterator[None]:
        if self._count == 0:
            self._idle = anyio.Event()
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


class Daemon:
    """Owns the store, the HTTP session, the providers, the lease and the scheduler."""

    def __init__(
        self,
        settings: Settings,
        *,
        policies: PolicySet,
        clock: Clock = utc_now,
        sleep: Sleep | None = None,
        env: Mapping[str, str] | None = None,
        notifier: Notifier | None = None,
        on_cycle: Callable[[CycleResult], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self._clock = clock
        self._sleep = sleep or anyio.sleep
        self._env = env
        self._notifier = notifier or Notifier({})
        self._on_cycle = on_cycle
        self._fingerprint = policy_fingerprint(policies)
        self._mtimes: dict[Path, float] = {}
        self.providers: dict[str, Provider] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._http: aiohttp.ClientSession | None = None
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.leadership: Leadership | None = None  # the coordinator: delivery and feeds
        self.shards: Shards  # the providers this replica polls and acts for
        self.dispatcher: Dispatcher | None = None
        self.snooze_links: SnoozeLinks | None = None
        self.keep_alive_links: KeepAliveLinks | None = None
        self.dry_run = settings.dry_run
        self.ready = anyio.Event()
        self._leading_changed = anyio.Event()  # wakes delivery when leadership changes
        self.metrics = metrics or Metrics()
        self._in_flight = InFlight()  # lease renewals, feed polls, policy watches
        self._balanced = False  # whether a balance round has claimed this replica's shards
        # The signal that ended serve(), if one did: `warden run` exits 130 after SIGINT.
        self.stopped_by: signal.Signals | None = None

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Daemon:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        ttl = timedelta(seconds=self.settings.lease_ttl)
        self.store = store = await Store.open(
            # A replica paused inside a transaction must not hold up the one taking over
            # for longer than its lease: the server ends such a session (PostgreSQL).
            self.settings.effective_database_url,
            stalled_after=min(STALLED_TRANSACTION, ttl / 2),
            replica=self.settings.replica_id,
        )
        await store.migrate()
        store.on_events_written(self._events_written)
        # Every request names this replica: a platform's logs (and the chaos tests) can
        # tell which replica sent what.
        agent = f"warden/{__version__} (replica {self.settings.replica_id})"
        self._http = aiohttp.ClientSession(raise_for_status=False, headers={"User-Agent": agent})
        self.leadership = Leadership(
            store,
            lease=LEASE,
            holder=self.settings.replica_id,
            ttl=ttl,
            clock=self._clock,
        )
        self.leadership.on_change(self._leadership_changed)
        self.shards = Shards(store, holder=self.settings.replica_id, ttl=ttl, clock=self._clock)
        self.dispatcher = Dispatcher(
            store,
            sinks=self.policies.sinks,
            policies=[*self.policies.policies, *self.policies.budgets],
            http=self._http,
            clock=self._clock,
            source=source_for(os.uname().nodename),  # stable across restarts, unlike the pid
            public_url=self.settings.public_url,
        )
        self.snooze_links = snooze_links(self.settings)
        if self.snooze_links is not None:
            self.keep_alive_links = KeepAliveLinks.beside(self.snooze_links)
        links = (
            WarningLinks(
                self.snooze_links,
                policies=lambda: self.policies.policies,
                clock=self._clock,
                keep_alive=self._keep_alive_link,
            )
            if self.snooze_links
            else None
        )
        self.pipeline = Pipeline(
            store,
            policies=self.policies,
            actuator=Actuator(links=links),
            budgets=BudgetKeeper(store),
            leases=self.shards.lease,
            metrics=self.metrics,
            router=lambda: self.dispatcher.routes if self.dispatcher else None,
            dry_run=lambda: self.dry_run,
        )
        self._build_providers()
        self._mtimes = snapshot_mtimes(self.settings.policy_path)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scheduler is not None and self._scheduler.running:
            await self._drain()  # no job may still use the store or HTTP once they close
        for provider in self.providers.values():
            await provider.aclose()
        if self._http is not None:
            await self._http.close()
        if self.store is not None:
            if self.leadership is not None:  # a standby takes over now, not at expiry
                with anyio.move_on_after(2):
                    await self.shards.release_all()
                    await self.leadership.release()
            await self.store.aclose()

    def _build_providers(self) -> None:
        assert self._http is not None
        self.providers = {
            # Retry-After holds end when the daemon's clock passes them (a test's, too).
            name: build_provider(name, config, self._http, clocks=Clocks.following(self._clock))
            for name, config in self.policies.providers.items()
        }
        for name in self.providers:
            self._locks.setdefault(name, anyio.Lock())

    # ------------------------------------------------------------ what others read

    @property
    def rules(self) -> Rules:
        return self._pipeline().rules

    @property
    def status(self) -> dict[str, ProviderStatus]:
        return self._pipeline().status

    @property
    def leader(self) -> bool:
        return self.leadership is not None and self.leadership.leading

    @property
    def actuator(self) -> Actuator:
        return self._pipeline().actuator

    def _pipeline(self) -> Pipeline:
        assert self.pipeline is not None, "the daemon is not open"
        return self.pipeline

    def _store(self) -> Store:
        assert self.store is not None, "the daemon is not open"
        return self.store

    # ------------------------------------------------------------ cycles

    async def run_cycle(self, now: datetime | None = None) -> list[CycleResult]:
        """One cycle of every provider, one after another, at one `now` (without the
        scheduler, as in tests and `run --once`, a balance round first)."""
        now = now or self._clock()
        if self._scheduler is None or not self._scheduler.running:
            await self.balance(now)
        return [await self.run_provider_cycle(name, now) for name in list(self.providers)]

    async def run_provider_cycle(
        self, name: str, now: datetime | None = None, *, due: bool = False
    ) -> CycleResult:
        """The pipeline for one provider (with `due`, only for what falls due now); then
        the exact-time job for what falls due next."""
        now = now or self._clock()
        if not self._balanced:  # no shard claimed yet: the first poll may come first
            await self.balance(now)
        with structlog.contextvars.bound_contextvars(provider=name):
            async with self._locks[name]:
                result = await self._pipeline().run(self.providers[name], now, due=due)
        if result.standby:
            await self._standby_status(name)
        self._schedule_due_job(name, result, now)
        self._announce_ready_once()
        if self._on_cycle is not None:
            self._on_cycle(result)
        return result

    async def plan(self, name: str, now: datetime | None = None) -> CycleResult:
        """`warden plan`: the pipeline with writes off."""
        return await self._pipeline().run(self.providers[name], now or self._clock(), writes=False)

    async def _standby_status(self, name: str) -> None:
        """A standby is as ready as the fleet: the leader's last poll, from the store."""
        state = await self._store().cycle_state(name)
        status = self.status.setdefault(name, ProviderStatus())
        status.last_success_at = state.last_success_at
        status.unreachable = state.unreachable_since is not None

    # ------------------------------------------------------------ leadership and delivery

    async def renew_lease(self, now: datetime | None = None) -> bool:
        """Take or keep the coordinator's lease (delivery, spend feeds): one replica."""
        assert self.leadership is not None
        async with self._in_flight.job():
            try:
                await self.leadership.renew(now or self._clock())
            except Exception as e:  # the database is down: the local deadline decides
                log.warning("lease.renew_failed", error=excerpt(f"{type(e).__name__}: {e}"))
        return self.leader

    async def balance(self, now: datetime | None = None) -> list[str]:
        """The coordinator's lease, then a balance round of the providers' shards."""
        now = now or self._clock()
        self._balanced = True
        await self.renew_lease(now)
        async with self._in_flight.job():
            try:
                return await self.shards.balance(
                    list(self.providers), release=self._release_shard, now=now
                )
            except Exception as e:  # the database is down: the local deadlines decide
                log.warning("shards.balance_failed", error=excerpt(f"{type(e).__name__}: {e}"))
                return self.shards.held()

    async def _release_shard(self, name: str, lease: Leadership) -> None:
        """Let a shard go once its cycle under way (if any) has finished."""
        async with self._locks.setdefault(name, anyio.Lock()):
            await lease.release()

    def _leadership_changed(self, fence: Fence | None) -> None:
        self._notifier.status("leading" if fence is not None else "standing by")
        if self.dispatcher is not None:
            self.dispatcher.use_store(self._store().with_fence(fence))
        self._leading_changed.set()

    async def _deliver_while_leading(self, stop: anyio.Event) -> None:
        """Run the dispatcher while this replica leads (from the moment it wins the
        lease, not at the next renewal); stand by while another does."""
        assert self.dispatcher is not None
        assert self.leadership is not None
        while not stop.is_set():
            self._leading_changed = changed = anyio.Event()
            if not self.leader:
                await _first_of(stop.wait, changed.wait)
                continue
            term = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_relay_either, stop, changed, term)
                await self.dispatcher.run(term, lease_check=self.leadership.check)
                tg.cancel_scope.cancel()

    async def _listen_for_events(self, stop: anyio.Event) -> None:
        """PostgreSQL: events written by any replica wake this one's dispatcher."""
        async with self._store().listen(self._events_written):
            await stop.wait()

    def _events_written(self) -> None:
        """Wake the dispatcher: new events are in the outbox."""
        if self.dispatcher is not None:
            self.dispatcher.notify()

    # ------------------------------------------------------------ time

    def start_scheduler(self) -> None:
        """Poll jobs per provider, edge jobs per schedule, and a policy-file watch."""
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._add_poll_jobs()
        self._add_feed_jobs()
        self._scheduler.add_job(
            self.reload_if_changed,
            IntervalTrigger(seconds=WATCH_INTERVAL),
            id="watch-policies",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.add_job(
            self.balance,
            IntervalTrigger(seconds=self.settings.lease_ttl / 3),
            id="lease",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.add_job(
            self._send_digests_safely,
            IntervalTrigger(seconds=DIGEST_CHECK),
            id="digests",
            max_instances=1,
            coalesce=True,
        )
        self._schedule_edges(self._clock())
        self._scheduler.start()

    def _add_poll_jobs(self) -> None:
        assert self._scheduler is not None
        for name, config in self.policies.providers.items():
            interval = config.poll_interval.total_seconds()
            self._scheduler.add_job(
                self.run_provider_cycle,
                IntervalTrigger(seconds=interval, jitter=interval / 10),
                args=[name],
                id=f"poll:{name}",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(interval),
                next_run_time=self._clock(),
            )

    def _add_feed_jobs(self) -> None:
        """One job per spend feed; a new poller each time, so a reload's token is used."""
        assert self._scheduler is not None
        assert self._http is not None
        for name, feed in self.policies.spend_feeds.items():
            poller = FeedPoller(name, feed, store=self._store(), http=self._http)
            self._scheduler.add_job(
                self._poll_feed,
                IntervalTrigger(seconds=feed.interval.total_seconds()),
                args=[poller],
                id=f"feed:{name}",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(feed.interval.total_seconds()),
                next_run_time=self._clock(),
            )

    async def send_digests(self, now: datetime | None = None) -> int:
        """Tell the owner digests whose time has come (leader only); how many were."""
        now = now or self._clock()
        if not self.policies.digests or (not self.leader and not await self.renew_lease(now)):
            return 0
        assert self.leadership is not None
        async with self._in_flight.job():
            store = self._store().with_fence(self.leadership.fence)
            return await send_digests(
                store,
                self.policies.digests,
                self.policies.budgets,
                horizon=self.policies.settings.savings_horizon,
                now=now,
            )

    async def _send_digests_safely(self) -> None:
        try:
            await self.send_digests()
        except Exception as e:  # the next minute tries again; the daemon goes on
            log.error("digest.failed", error=excerpt(f"{type(e).__name__}: {e}"))

    async def _poll_feed(self, poller: FeedPoller) -> None:
        """Leader only: a standby would store the same records (harmless) but tell each
        failure a second time, and load the feed for nothing."""
        now = self._clock()
        if not self.leader and not await self.renew_lease(now):
            return
        async with self._in_flight.job():
            await poller.poll_once(now)

    def _schedule_due_job(self, name: str, result: CycleResult, now: datetime) -> None:
        """One exact-time job per provider, for the earliest of what falls due before the
        next poll: a warning's deadline, a snooze's end, an idle or lifetime limit. It
        runs a due cycle, which reads again only the workspaces due then (so it acts
        within a second at any fleet size) and schedules the next. The due times are
        rebuilt from the store by every poll, so a restart loses none."""
        if self._scheduler is None or not self._scheduler.running or result.next_due is None:
            return
        if result.next_due < now + self.policies.providers[name].poll_interval:
            self._scheduler.add_job(
                self.run_provider_cycle,
                DateTrigger(run_date=max(result.next_due, now)),
                args=[name],
                kwargs={"due": True},
                id=f"due:{name}",
                replace_existing=True,
                misfire_grace_time=60,
            )

    def _schedule_edges(self, now: datetime) -> None:
        assert self._scheduler is not None
        for schedule_name, schedule in self.rules.schedules.items():
            edge = next_edge(schedule, now)
            if edge is not None:
                self._scheduler.add_job(
                    self._edge,
                    DateTrigger(run_date=edge.at + timedelta(seconds=0.2)),
                    id=f"edge:{schedule_name}",
                    replace_existing=True,
                    misfire_grace_time=900,
                )

    async def _edge(self) -> None:
        await self.run_cycle()
        self._schedule_edges(self._clock())

    # ------------------------------------------------------------ reload

    async def reload(self) -> bool:
        """Load the policy files again; a bad set is rejected and the last good one stays."""
        now = self._clock()
        try:
            # Off the event loop: a large file must not stall health checks or actions.
            policies = await anyio.to_thread.run_sync(load_policy_set, self.settings, self._env)
        except Exception as e:  # whatever went wrong, the last good set stays in force
            problems = (
                [str(p) for p in e.problems]
                if isinstance(e, PolicyError)
                else [f"the policy files could not be loaded: {type(e).__name__}: {e}"]
            )
            log.error("policy.rejected", problems=problems[:20], count=len(problems))
            self.metrics.policy_reload(ok=False)
            await self._store().add_events(
                [ev.new_event(ev.POLICY_REJECTED, "policies", now=now, data={"problems": problems})]
            )
            return False
        self.metrics.policy_reload(ok=True)
        fingerprint = policy_fingerprint(policies)
        if fingerprint == self._fingerprint:
            return True
        await self._use(policies, fingerprint, now)
        return True

    async def _use(self, policies: PolicySet, fingerprint: str, now: datetime) -> None:
        """Run with a new policy set from the next cycle on."""
        self.policies, self._fingerprint = policies, fingerprint
        self._pipeline().configure(policies)
        self.actuator.degraded.clear()  # a new plan or token may have come with the edit
        if self.dispatcher is not None:
            self.dispatcher.configure(policies.sinks, [*policies.policies, *policies.budgets])
        for provider in self.providers.values():
            await provider.aclose()
        self._build_providers()
        if self._scheduler is not None and self._scheduler.running:
            for job in self._scheduler.get_jobs():
                if job.id.startswith(("poll:", "due:", "edge:", "feed:")):
                    job.remove()
            self._add_poll_jobs()
            self._add_feed_jobs()
            self._schedule_edges(now)
        log.info("policy.loaded", policies=len(policies.policies), providers=len(self.providers))
        data = {"policies": [p.name for p in policies.policies], "fingerprint": fingerprint}
        await self._store().add_events(
            [ev.new_event(ev.POLICY_LOADED, "policies", now=now, data=data)]
        )

    async def reload_if_changed(self) -> None:
        mtimes = snapshot_mtimes(self.settings.policy_path)
        if mtimes != self._mtimes:
            self._mtimes = mtimes
            async with self._in_flight.job():
                await self._reload_safely()

    async def _reload_safely(self) -> None:
        """A reload that fails for any reason (even writing its event) never ends the daemon."""
        try:
            await self.reload()
        except Exception as e:
            log.error("policy.reload_failed", error=excerpt(f"{type(e).__name__}: {e}"))

    # ------------------------------------------------------------ running

    async def serve(self, until: anyio.Event | None = None) -> None:
        """Run until SIGTERM/SIGINT (or `until`); SIGHUP reloads the policies."""
        stop = until or anyio.Event()
        async with anyio.create_task_group() as tg:
            # Listening before the first poll: /healthz answers while Warden starts, and a
            # port that cannot be bound stops the start instead of running unwatched.
            await tg.start(
                partial(
                    serve_admin,
                    metrics=self.metrics,
                    clock=self._clock,
                    extra_routes=self._snooze_routes(),
                ),
                self,
                self.settings,
            )
            tg.start_soon(self._deliver_while_leading, stop)
            tg.start_soon(self._listen_for_events, stop)
            await self.balance()  # before the first poll: delivery and shards start now
            self.start_scheduler()
            tg.start_soon(self._signals, stop)
            tg.start_soon(self._watchdog)
            await stop.wait()
            self._notifier.stopping()
            log.info("daemon.stopping")
            await self._drain()
            tg.cancel_scope.cancel()

    def _snooze_routes(self) -> list[web.AbstractRouteDef]:
        """The owners' snooze and keep-alive links, on the admin API's port, when links
        are signed."""
        if self.snooze_links is None or self.keep_alive_links is None:
            return []
        return [
            *snooze_routes(
                links=self.snooze_links,
                store=self._store(),
                policies=lambda: self.policies.policies,
                clock=self._clock,
                on_snoozed=self._events_written,
            ),
            *keep_alive_routes(
                links=self.keep_alive_links,
                store=self._store(),
                policies=lambda: self.policies.policies,
                clock=self._clock,
                on_kept_alive=self._events_written,
            ),
        ]

    def _keep_alive_link(self, ws: WorkspaceId, now: datetime) -> str:
        assert self.keep_alive_links is not None
        return self.keep_alive_links.make(ws, now=now)

    async def _drain(self) -> None:
        """Let in-flight cycles finish (their actions are recorded) and the other jobs
        that use the store, within the grace period."""
        assert self._scheduler is not None
        self._scheduler.pause()
        with anyio.move_on_after(SHUTDOWN_GRACE):
            for lock in self._locks.values():
                async with lock:
                    pass
            await self._in_flight.idle()
        self._scheduler.shutdown(wait=False)

    async def _signals(self, stop: anyio.Event) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self._notifier.reloading()
                    await self._reload_safely()
                    self._notifier.send(READY="1", STATUS="policies reloaded")
                else:
                    self.stopped_by = signal.Signals(signum)
                    stop.set()
                    return

    async def _watchdog(self) -> None:
        interval = self._notifier.watchdog_seconds
        if not interval:
            return
        while True:
            self._notifier.watchdog()
            await anyio.sleep(interval / 2)

    def _announce_ready_once(self) -> None:
        """READY=1 once every provider has been polled once (successfully or not)."""
        if self.ready.is_set():
            return
        if all(s.last_success_at or s.last_error for s in self.status.values()):
            self.ready.set()
            ok = sum(1 for s in self.status.values() if s.last_success_at)
            self._notifier.ready(f"watching {ok}/{len(self.status)} providers")


async def _relay_either(first: anyio.Event, second: anyio.Event, target: anyio.Event) -> None:
    """Set `target` when either `first` or `second` is set."""
    await _first_of(first.wait, second.wait)
    target.set()


async def _first_of(*waits: Callable[[], Any]) -> None:
    """Return as soon as one of `waits` returns; cancel the others."""
    async with anyio.create_task_group() as tg:

        async def one(wait: Callable[[], Any]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)


def snooze_links(settings: Settings) -> SnoozeLinks | None:
    """Signed snooze links, when there is a secret to sign them and a URL to reach us."""
    if settings.snooze_secret is None or settings.public_url is None:
        return None
    return SnoozeLinks(settings.snooze_secret.get_secret_value().encode(), settings.public_url)
