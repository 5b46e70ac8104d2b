"""Warden's Prometheus metrics: their names, labels and meaning, in one registry per daemon.

Callers say what happened (`poll_finished`, `action`, `policy_reload`, ...), never which
collector to move: the names and labels below are a contract with admins' dashboards
and alert rules (docs/operations.md, deploy/prometheus/warden-alerts.yaml), so they
change only with a CHANGELOG entry.

Each `Metrics` owns its own `CollectorRegistry` and never touches the global one: two
daemons in one process (tests, the demo) never share a number. Nothing here reads a
clock; times are passed in. Label values are provider instance, policy, sink and scope
names from the policy files, never a workspace id (one series per workspace would grow
without bound) and never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import suppress
from datetime import datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from warden import __version__
from warden.model import State

# A poll lists every page of a platform: from tens of milliseconds to minutes.
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# How late an action ran after it fell due: a poll interval or two is normal.
LATENESS_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
NO_STATUS = "none"  # api_error without an HTTP status: connection, timeout, unreadable answer


class Metrics:
    """The daemon's metrics; `render()` gives them in the Prometheus exposition format."""

    def __init__(self, *, version: str = __version__) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._build_info = Gauge(
            "warden_build_info",
            "Always 1; the label says which Warden runs.",
            ["version"],
            registry=r,
        )
        self._build_info.labels(version=version).set(1)
        self._polls = Counter(
            "warden_polls",
            "Polls of a provider (a full listing), by outcome: ok or failed.",
            ["provider", "outcome"],
            registry=r,
        )
        self._poll_seconds = Histogram(
            "warden_poll_duration_seconds",
            "How long one poll of a provider took, failed ones included.",
            ["provider"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self._last_success = Gauge(
            "warden_last_successful_poll_timestamp_seconds",
            "Unix time of the provider's last successful poll; absent before the first.",
            ["provider"],
            registry=r,
        )
        self._reachable = Gauge(
            "warden_provider_reachable",
            "1 when the provider's last poll succeeded, 0 when it failed.",
            ["provider"],
            registry=r,
        )
        self._workspaces = Gauge(
            "warden_workspaces",
            "Workspaces the provider's last successful poll listed, by state.",
            ["provider", "state"],
            registry=r,
        )
        self._decisions = Counter(
            "warden_decisions",
            "Decisions by policy and kind: warn, act, clear or skip.",
            ["policy", "kind"],
            registry=r,
        )
        self._actions = Counter(
            "warden_actions",
            "Actions by policy, verb and outcome: succeeded, failed, skipped, planned, held.",
            ["policy", "verb", "outcome"],
            registry=r,
        )
        self._lateness = Histogram(
            "warden_action_delay_after_due_seconds",
            "How long after it fell due (a warning's deadline) an action was carried out.",
            ["verb"],
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self._api_errors = Counter(
            "warden_provider_api_errors",
            "Failed platform API calls by provider and HTTP status ('none': no answer).",
            ["provider", "status"],
            registry=r,
        )
        self._outbox = Gauge(
            "warden_outbox_pending_events",
            "Events written to the outbox and not yet delivered to the sink.",
            ["sink"],
            registry=r,
        )
        self._delivered = Counter(
            "warden_deliveries", "Events delivered to a sink.", ["sink"], registry=r
        )
        self._delivery_failures = Counter(
            "warden_delivery_failures",
            "Failed delivery attempts to a sink (each is retried).",
            ["sink"],
            registry=r,
        )
        self._dead_letters = Counter(
            "warden_dead_lettered_events",
            "Events given up on after the last retry to a sink.",
            ["sink"],
            registry=r,
        )
        self._spend = Gauge(
            "warden_spend_usd",
            "Money spent in the current window of a budget, per scope value (owner, all, ...).",
            ["policy", "scope"],
            registry=r,
        )
        self._budget_used = Gauge(
            "warden_budget_used_ratio",
            "Spend over the budget's limit in the current window (1 = the whole budget).",
            ["policy", "scope"],
            registry=r,
        )
        self._reloads = Counter(
            "warden_policy_reloads",
            "Policy reloads by outcome: ok (loaded or unchanged) or rejected (bad files).",
            ["outcome"],
            registry=r,
        )
        self._last_reload_ok = Gauge(
            "warden_policy_last_reload_ok",
            "1 when the last policy reload succeeded; 0 while bad files are ignored.",
            registry=r,
        )
        self._last_reload_ok.set(1)  # the daemon refuses to start on bad files
        self._dry_run = Gauge(
            "warden_dry_run",
            "1 when the daemon decides and tells but acts on nothing.",
            registry=r,
        )
        self._avoided = _Avoided()
        r.register(self._avoided)
        self._providers: set[str] = set()

    # ------------------------------------------------------------ observe

    def poll_finished(self, provider: str, *, seconds: float, ok: bool) -> None:
        """One poll of `provider` ended after `seconds`, successfully or not."""
        self._polls.labels(provider=provider, outcome="ok" if ok else "failed").inc()
        self._poll_seconds.labels(provider=provider).observe(max(seconds, 0.0))

    def workspaces_seen(self, provider: str, counts_by_state: Mapping[str, int]) -> None:
        """How many workspaces a successful poll listed in each state.

        Every state gets a value, 0 included, so that a state that empties drops to 0
        instead of keeping its last count.
        """
        for state in {str(s) for s in State} | set(counts_by_state):
            value = counts_by_state.get(state, 0)
            self._workspaces.labels(provider=provider, state=state).set(value)

    def providers_polled(
        self, last_success: Mapping[str, datetime | None], unreachable: Iterable[str] = ()
    ) -> None:
        """Each provider's last successful poll and reachability, as the daemon knows them.

        Providers no longer configured (a reload removed them) are forgotten: their last
        success would otherwise grow old for ever and keep a staleness alert firing.
        """
        down = set(unreachable)
        for provider, at in last_success.items():
            if at is not None:
                self._last_success.labels(provider=provider).set(at.timestamp())
            self._reachable.labels(provider=provider).set(0 if provider in down else 1)
        for gone in self._providers - set(last_success):
            self._forget_provider(gone)
        self._providers = set(last_success)

    def _forget_provider(self, provider: str) -> None:
        for gauge in (self._last_success, self._reachable):
            _remove(gauge, provider)
        for state in {str(s) for s in State}:
            _remove(self._workspaces, provider, state)

    # ------------------------------------------------------------ decide and act

    def decision(self, policy: str, kind: str) -> None:
        self._decisions.labels(policy=policy, kind=str(kind)).inc()

    def action(
        self,
        policy: str,
        verb: str,
        outcome: str,
        *,
        latency_after_due: timedelta | None = None,
    ) -> None:
        """One action ended; `latency_after_due` when it had a deadline (a warning's)."""
        self._actions.labels(policy=policy, verb=str(verb), outcome=str(outcome)).inc()
        if latency_after_due is not None:
            seconds = max(latency_after_due.total_seconds(), 0.0)
            self._lateness.labels(verb=str(verb)).observe(seconds)

    def api_error(self, provider: str, status: int | None) -> None:
        """A platform call failed; `status` is None when there was no HTTP answer."""
        self._api_errors.labels(
            provider=provider, status=NO_STATUS if status is None else str(status)
        ).inc()

    # ------------------------------------------------------------ tell

    def outbox(self, depth_by_sink: Mapping[str, int]) -> None:
        """Events waiting for each sink; sinks not named (no longer configured) are dropped."""
        self._outbox.clear()
        for sink, depth in depth_by_sink.items():
            self._outbox.labels(sink=sink).set(depth)

    def delivered(self, sink: str) -> None:
        self._delivered.labels(sink=sink).inc()

    def delivery_failed(self, sink: str) -> None:
        self._delivery_failures.labels(sink=sink).inc()

    def dead_lettered(self, sink: str) -> None:
        self._dead_letters.labels(sink=sink).inc()

    # ------------------------------------------------------------ budgets

    def budget_standing(self, policy: str, scope: str, spent: Decimal, limit: Decimal) -> None:
        """Where one budget's scope value stands in its current window."""
        self._spend.labels(policy=policy, scope=scope).set(float(spent))
        self._budget_used.labels(policy=policy, scope=scope).set(float(spent / limit))

    def avoided(self, totals: Mapping[tuple[str, str], Decimal]) -> None:
        """What Warden's stops avoided so far, by (provider, policy), read from the store
        at each scrape (`spend/savings.py`): `warden_avoided_usd_total`."""
        self._avoided.totals = dict(totals)

    # ------------------------------------------------------------ the daemon itself

    def policy_reload(self, ok: bool) -> None:
        """A reload ended: ok (loaded, or unchanged) or rejected (the last good set stays)."""
        self._reloads.labels(outcome="ok" if ok else "rejected").inc()
        self._last_reload_ok.set(1 if ok else 0)

    def dry_run(self, enabled: bool) -> None:
        self._dry_run.set(1 if enabled else 0)

    # ------------------------------------------------------------ exposition

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics as bytes and their content type, OpenMetrics if `accept` asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _Avoided(Collector):
    """`warden_avoided_usd_total`: a counter whose value the store holds, not this process.

    Avoided spend only grows (each stop counts the time it was seen stopped, up to the
    horizon), but it is computed from the store at each scrape, so that every replica
    reports the same figure and a restart loses nothing.
    """

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], Decimal] = {}

    def describe(self) -> list[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> list[CounterMetricFamily]:
        family = self._family()
        for (provider, policy), amount in sorted(self.totals.items()):
            family.add_metric([provider, policy], float(amount))
        return [family]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "warden_avoided_usd",
            "Spend Warden's stops avoided: each stop's rate times the time it stayed stopped, "
            "at most settings.savings_horizon; by provider and the policy that stopped it.",
            labels=["provider", "policy"],
        )


def _remove(metric: Gauge, *labels: str) -> None:
    with suppress(KeyError):  # never set, and a prometheus-client older than 0.21 says so
        metric.remove(*labels)
