"""The daemon: wiring, the per-provider cycle, exact-time jobs, reload and shutdown.

One cycle of one provider: observe → remember → decide → act (and tell, through the
outbox the store writes). `run_cycle(now)` is the whole of it, callable from tests,
`warden plan` and `warden run --once` as well as from the scheduler.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
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

from warden.actuator import Actuator, Cycle, CycleOutcome, allowed_actions
from warden.budget.enforce import combine, enforcement, undo
from warden.budget.keeper import BudgetKeeper, Review, Settled, ledger_zones
from warden.clock import Clock, monotonic, utc_now
from warden.errors import ProviderError, excerpt
from warden.events import catalogue as ev
from warden.events.dispatcher import Dispatcher
from warden.events.envelope import source_for
from warden.events.snooze import SnoozeLinks, WarningLinks, snooze_routes
from warden.logging import REDACTOR
from warden.metrics import Metrics
from warden.model import (
    EMPTY_MEMORY,
    Decision,
    Event,
    Memory,
    State,
    Verb,
    Workspace,
    WorkspaceId,
)
from warden.policy.decide import Rules, decide, next_due, sample_window
from warden.policy.loader import (
    PolicyError,
    PolicySet,
    load_policies,
    policy_fingerprint,
    snapshot_mtimes,
)
from warden.policy.schedule import next_edge
from warden.policy.selector import server_filter
from warden.providers.base import ListFilter, Observation, Provider
from warden.providers.registry import build_provider, capability_names
from warden.retry import Sleep
from warden.sdnotify import Notifier
from warden.server import serve_admin
from warden.settings import Settings, policy_environment
from warden.spend.cycle import accruals_for
from warden.spend.feeds import FeedPoller
from warden.store import Store

log = structlog.get_logger(__name__)

LEASE = "warden-leader"
LEASE_TTL = timedelta(seconds=30)  # a replica that stops renewing is replaced this soon
LEASE_RENEW = 10.0  # seconds between renewals: three chances before the lease lapses
SPEND_GAP_LIMIT = timedelta(minutes=10)  # longer unobserved stretches accrue as estimated
SHUTDOWN_GRACE = 8.0  # seconds for in-flight actions at SIGTERM: systemd waits 10
WATCH_INTERVAL = 2.0  # seconds between checks of the policy files' mtimes


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


@dataclass(slots=True)
class ProviderStatus:
    """What the daemon knows of one provider's health, for /readyz and metrics."""

    last_success_at: datetime | None = None
    last_error: str | None = None
    workspaces: int = 0
    skipped: int = 0
    unreachable: bool = False


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


class Phases:
    """How long each part of a cycle took, for the cycle's log line (monotonic clock)."""

    def __init__(self) -> None:
        self._last = monotonic()
        self.seconds: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = monotonic()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now


@dataclass(slots=True)
class CycleResult:
    """One provider's cycle: what was seen, decided and done."""

    provider: str
    observation: Observation | None
    decisions: list[Decision] = field(default_factory=list)
    outcome: CycleOutcome = field(default_factory=CycleOutcome)
    error: str | None = None
    next_due: datetime | None = None  # when a decision changes without new facts
    review: Review | None = None  # where the budgets stood, and what fired this cycle


class Daemon:
    """Owns the store, the HTTP session, the providers and the scheduler."""

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
        self.rules = rules_of(policies)
        self._clock = clock
        self._sleep = sleep
        self._env = env
        self._notifier = notifier or Notifier({})
        self._on_cycle = on_cycle
        self._fingerprint = policy_fingerprint(policies)
        self._mtimes: dict[Path, float] = {}
        self.providers: dict[str, Provider] = {}
        self.status: dict[str, ProviderStatus] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._http: aiohttp.ClientSession | None = None
        self.store: Store | None = None
        self.actuator: Actuator | None = None
        self.budgets: BudgetKeeper | None = None
        self.dispatcher: Dispatcher | None = None
        self.snooze_links: SnoozeLinks | None = None
        self.dry_run = settings.dry_run
        self.ready = anyio.Event()
        self.leader = False  # only the replica holding the lease decides, acts and delivers
        self._term: anyio.Event | None = None  # ends this replica's delivery when it stops leading
        self.metrics = metrics or Metrics()
        self._in_flight = InFlight()  # lease renewals, feed polls, policy watches
        # The signal that ended serve(), if one did: `warden run` exits 130 after SIGINT.
        self.stopped_by: signal.Signals | None = None

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Daemon:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = await Store.open(self.settings.effective_database_url)
        await self.store.migrate()
        self._http = aiohttp.ClientSession(raise_for_status=False)
        self.dispatcher = Dispatcher(
            self.store,
            sinks=self.policies.sinks,
            policies=[*self.policies.policies, *self.policies.budgets],
            http=self._http,
            clock=self._clock,
            source=source_for(os.uname().nodename),  # stable across restarts, unlike the pid
            public_url=self.settings.public_url,
        )
        self.snooze_links = snooze_links(self.settings)
        links = (
            WarningLinks(
                self.snooze_links, policies=lambda: self.policies.policies, clock=self._clock
            )
            if self.snooze_links
            else None
        )
        self.actuator = Actuator(store=self.store, sleep=self._sleep, links=links)
        self.budgets = BudgetKeeper(self.store)
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
            if self.leader:  # let a standby take over now rather than when the lease lapses
                await self.store.release_lease(LEASE, self.settings.replica_id)
            await self.store.aclose()

    def _build_providers(self) -> None:
        assert self._http is not None
        self.providers = {
            name: build_provider(name, config, self._http)
            for name, config in self.policies.providers.items()
        }
        for name in self.providers:
            self.status.setdefault(name, ProviderStatus())
            self._locks.setdefault(name, anyio.Lock())

    # ------------------------------------------------------------ one cycle

    async def run_cycle(self, now: datetime | None = None) -> list[CycleResult]:
        """One cycle of every provider, one after another, at one `now`."""
        now = now or self._clock()
        return [await self.run_provider_cycle(name, now) for name in list(self.providers)]

    async def run_provider_cycle(self, name: str, now: datetime | None = None) -> CycleResult:
        """Observe, remember, decide and act for one provider."""
        now = now or self._clock()
        with structlog.contextvars.bound_contextvars(provider=name):
            async with self._locks[name]:
                result = await self._cycle(name, now)
        self._schedule_due_jobs(name, result, now)
        self._events_written()
        self._announce_ready_once()
        if self._on_cycle is not None:
            self._on_cycle(result)
        return result

    async def _cycle(self, name: str, now: datetime) -> CycleResult:
        store, provider = self._store(), self.providers[name]
        observation = await self._observe(provider, now)
        if observation is None:
            return CycleResult(name, None, error=self.status[name].last_error)
        if not self.leader and not await self.renew_lease(now):
            return CycleResult(name, observation)  # a standby observes; the leader acts
        phases = Phases()
        since = await store.last_cycle(name)
        await store.record_observation(name, observation.workspaces, now)
        await self._account(name, observation, now)
        window = sample_window(self.rules)
        memory = await store.load_memory(name, samples_since=now - window if window else None)
        phases.mark("remember")
        review = await self._budget_keeper().review(
            self.policies.budgets, now=now, observed=observation
        )
        for standing in review.standings:
            self.metrics.budget_standing(
                standing.budget.name, standing.scope, standing.spent, standing.limit
            )
        decisions = decide(self.rules, observation.workspaces, memory, now=now, since=since)
        decisions, settled = self._with_budgets(decisions, review, observation, memory, now)
        phases.mark("decide")
        cycle = Cycle(
            provider=provider,
            rules=self.rules,
            snapshots={ws.id: ws for ws in observation.workspaces},
            memory=memory,
            now=now,
            since=since,
            dry_run=self.dry_run or self.policies.providers[name].dry_run,
        )
        await store.record_decisions(decisions, now, [])
        for decision in decisions:
            self.metrics.decision(decision.policy, decision.kind)
        assert self.actuator is not None
        outcome = await self.actuator.apply(cycle, decisions)
        await self._account_stops(name, outcome, cycle.snapshots, now)
        budgets = {b.name: b for b in self.policies.budgets}
        await self._budget_keeper().remember(outcome, settled, budgets, now=now)
        self._count_actions(outcome, memory, now)
        await store.mark_cycle(name, now, success=True)
        phases.mark("act")
        upcoming = (
            next_due(self.rules, observation.workspaces, await store.load_memory(name), now=now)
            if self._scheduler is not None and self._scheduler.running
            else None  # tests and `run --once` move time themselves
        )
        log.info(
            "cycle.finished",
            workspaces=len(observation.workspaces),
            skipped=len(observation.skipped),
            decisions=len(decisions),
            acted=len(outcome.done),
            seconds=phases.seconds,
        )
        return CycleResult(name, observation, decisions, outcome, next_due=upcoming, review=review)

    async def _account_stops(
        self,
        name: str,
        outcome: CycleOutcome,
        snapshots: Mapping[WorkspaceId, Workspace],
        now: datetime,
    ) -> None:
        """A workspace Warden stopped costs nothing from now: its spend ends at the stop,
        not at the next poll that sees it stopped (a poll interval's worth less error)."""
        stopped = [
            replace(snapshots[d.workspace], state=State.STOPPED, observed_at=now)
            for d in outcome.done
            if d.verb is Verb.STOP and d.workspace in snapshots
        ]
        if stopped:
            await self._account(name, Observation(name, now, stopped), now)

    def _with_budgets(
        self,
        decisions: list[Decision],
        review: Review,
        observation: Observation,
        memory: Mapping[WorkspaceId, Memory],
        now: datetime,
    ) -> tuple[list[Decision], list[Settled]]:
        """The policies' decisions with what the budgets do to this provider's workspaces."""
        if not self.policies.budgets:
            return decisions, []
        enforced = enforcement(review.standings, observation.workspaces)
        snapshots = {ws.id: ws for ws in observation.workspaces}
        undone = undo(review.ended, snapshots, memory, self.rules, now=now)
        running = sum(1 for ws in observation.workspaces if ws.state == "running")
        allowance = allowed_actions(self.rules, running)
        merged = combine(decisions, enforced, undone.decisions, allowance=allowance)
        return merged, undone.settled

    def _budget_keeper(self) -> BudgetKeeper:
        assert self.budgets is not None, "the daemon is not open"
        return self.budgets

    async def _account(self, name: str, observation: Observation, now: datetime) -> None:
        """Add what each observed workspace cost since its last observation to the ledger."""
        store, pricing = self._store(), self.policies.pricing.get(name)
        if pricing is None:
            return  # not priced: nothing to account (see accruals_for)
        accruals, events = accruals_for(
            observation,
            await store.spend_points(name),
            pricing,
            now=now,
            max_gap=SPEND_GAP_LIMIT,
            zones=ledger_zones(self.policies.budgets),
        )
        await store.account_spend(name, accruals, events)

    def _count_actions(
        self, outcome: CycleOutcome, memory: Mapping[WorkspaceId, Memory], now: datetime
    ) -> None:
        """Each action's outcome, and how late a warned one ran after its deadline."""
        for decision in outcome.done:
            warning = memory.get(decision.workspace, EMPTY_MEMORY).warnings.get(decision.policy)
            late = now - warning.due_at if warning is not None else None
            self.metrics.action(
                decision.policy, str(decision.verb), "succeeded", latency_after_due=late
            )
        for decision in outcome.planned:
            self.metrics.action(decision.policy, str(decision.verb), "planned")
        for decision, _why in outcome.failed:
            self.metrics.action(decision.policy, str(decision.verb), "failed")
        for decision, _why in outcome.held:
            self.metrics.action(decision.policy, str(decision.verb), "held")

    async def _observe(self, provider: Provider, now: datetime) -> Observation | None:
        """A full listing, or None (never an empty list) when the provider cannot be read."""
        status = self.status[provider.name]
        store = self._store()
        started = monotonic()
        try:
            observation = await provider.observe(
                now=now, filter=self._listing_filter(provider.name)
            )
        except ProviderError as e:
            self.metrics.poll_finished(provider.name, seconds=monotonic() - started, ok=False)
            self.metrics.api_error(provider.name, e.status)
            status.last_error = str(e)
            events = []
            if not status.unreachable:
                events.append(
                    ev.new_event(
                        ev.PROVIDER_UNREACHABLE,
                        provider.name,
                        now=now,
                        data={"provider": provider.name, "error": str(e)},
                    )
                )
            status.unreachable = True
            await store.add_events(events)
            await store.mark_cycle(provider.name, now, success=False)
            log.warning("poll.failed", error=str(e))
            return None
        self.metrics.poll_finished(provider.name, seconds=monotonic() - started, ok=True)
        self.metrics.workspaces_seen(
            provider.name, Counter(str(ws.state) for ws in observation.workspaces)
        )
        events = [
            _skipped_event(provider.name, s.native_id, s.reason, now) for s in observation.skipped
        ]
        if status.unreachable:
            events.append(
                ev.new_event(
                    ev.PROVIDER_RECOVERED, provider.name, now=now, data={"provider": provider.name}
                )
            )
        await store.add_events(events)
        for skipped in observation.skipped:
            log.warning("workspace.skipped", native_id=skipped.native_id, reason=skipped.reason)
        status.unreachable, status.last_error = False, None
        status.last_success_at = now
        status.workspaces, status.skipped = len(observation.workspaces), len(observation.skipped)
        return observation

    def _listing_filter(self, name: str) -> ListFilter | None:
        """Narrow the listing to what the policies can match, unless its spend counts."""
        if name in self.policies.pricing:
            return None  # every running workspace costs money, matched by a policy or not
        return server_filter(self.rules.policies, name)

    def _store(self) -> Store:
        assert self.store is not None, "the daemon is not open"
        return self.store

    # ------------------------------------------------------------ leadership

    async def renew_lease(self, now: datetime | None = None) -> bool:
        """Take or keep the leader lease; with several replicas on one database, one acts."""
        now = now or self._clock()
        was = self.leader
        async with self._in_flight.job():
            self.leader = await self._store().try_acquire_lease(
                LEASE, self.settings.replica_id, now, LEASE_TTL
            )
        if self.leader != was:
            log.info(
                "lease.acquired" if self.leader else "lease.lost", replica=self.settings.replica_id
            )
            self._notifier.status("leading" if self.leader else "standing by")
            if not self.leader and self._term is not None:
                self._term.set()
        return self.leader

    async def _deliver_while_leading(self, stop: anyio.Event) -> None:
        """Run the dispatcher while this replica leads; stand by while another does."""
        assert self.dispatcher is not None
        while not stop.is_set():
            if not self.leader:
                with anyio.move_on_after(LEASE_RENEW):
                    await stop.wait()
                continue
            self._term = term = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_relay, stop, term)
                await self.dispatcher.run(term)
                tg.cancel_scope.cancel()

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
            self.renew_lease,
            IntervalTrigger(seconds=LEASE_RENEW),
            id="lease",
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

    async def _poll_feed(self, poller: FeedPoller) -> None:
        """Leader only: a standby would store the same records (harmless) but tell each
        failure a second time, and load the feed for nothing."""
        now = self._clock()
        if not self.leader and not await self.renew_lease(now):
            return
        async with self._in_flight.job():
            await poller.poll_once(now)
        self._events_written()

    def _schedule_due_jobs(self, name: str, result: CycleResult, now: datetime) -> None:
        """An exact-time cycle for what falls due before the next poll: a warning's
        deadline, a snooze's end, an idle or lifetime limit (rebuilt from the store,
        since every cycle reads its memory, so a restart loses none)."""
        if self._scheduler is None or not self._scheduler.running or result.next_due is None:
            return
        if result.next_due < now + self.policies.providers[name].poll_interval:
            self._scheduler.add_job(
                self.run_provider_cycle,
                DateTrigger(run_date=result.next_due + timedelta(seconds=0.2)),
                args=[name],
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
            log.error("policy.rejected", problems=problems)
            self.metrics.policy_reload(ok=False)
            await self._store().add_events(
                [ev.new_event(ev.POLICY_REJECTED, "policies", now=now, data={"problems": problems})]
            )
            return False
        self.metrics.policy_reload(ok=True)
        fingerprint = policy_fingerprint(policies)
        if fingerprint == self._fingerprint:
            return True
        self.policies, self.rules, self._fingerprint = policies, rules_of(policies), fingerprint
        if self.actuator is not None:
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
        await self._store().add_events(
            [
                ev.new_event(
                    ev.POLICY_LOADED,
                    "policies",
                    now=now,
                    data={
                        "policies": [p.name for p in policies.policies],
                        "fingerprint": fingerprint,
                    },
                )
            ]
        )
        return True

    def _events_written(self) -> None:
        """Wake the dispatcher: new events are in the outbox."""
        if self.dispatcher is not None:
            self.dispatcher.notify()

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
            self.start_scheduler()
            tg.start_soon(self._signals, stop, tg.cancel_scope)
            tg.start_soon(self._watchdog)
            tg.start_soon(self._deliver_while_leading, stop)
            await stop.wait()
            self._notifier.stopping()
            log.info("daemon.stopping")
            await self._drain()
            tg.cancel_scope.cancel()

    def _snooze_routes(self) -> list[web.AbstractRouteDef]:
        """The owners' snooze links, on the admin API's port, when links are signed."""
        if self.snooze_links is None:
            return []
        return list(
            snooze_routes(
                links=self.snooze_links,
                store=self._store(),
                policies=lambda: self.policies.policies,
                clock=self._clock,
                on_snoozed=self._events_written,
            )
        )

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

    async def _signals(self, stop: anyio.Event, _scope: Any) -> None:
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


async def _relay(source: anyio.Event, target: anyio.Event) -> None:
    """Set `target` when `source` is set."""
    await source.wait()
    target.set()


def snooze_links(settings: Settings) -> SnoozeLinks | None:
    """Signed snooze links, when there is a secret to sign them and a URL to reach us."""
    if settings.snooze_secret is None or settings.public_url is None:
        return None
    return SnoozeLinks(settings.snooze_secret.get_secret_value().encode(), settings.public_url)


def _skipped_event(provider: str, native_id: str | None, reason: str, now: datetime) -> Event:
    subject = f"{provider}/{native_id}" if native_id else provider
    return ev.new_event(
        ev.PROVIDER_ANSWER_REJECTED,
        subject,
        now=now,
        data={"provider": provider, "workspace": subject if native_id else None, "reason": reason},
    )
