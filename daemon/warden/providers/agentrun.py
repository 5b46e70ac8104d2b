"""The agent-run platform adapter: one workspace, its limits and its kill switch.

The platform (seed `004`) exposes one workspace per credential at `/v1/workspace/`:
its daily budget, per-user daily budget, maximum of concurrent runs, and a kill switch
that blocks every run and step (`KILL_SWITCH_ACTIVE`). Warden sees it as ONE
`Workspace`: RUNNING while the kill switch is off, STOPPED while it is on, with the
settings in `facts`. `stop`/`start` turn the kill switch on/off; `throttle` lowers
limits and `restore` puts back what a throttle replaced. It cannot extend anything.

Auth: the seed says "JWT or API Key" without naming a header. My reading is that
both are bearer credentials, so the token travels only as
`Authorization: Bearer <token>`: never in a URL, message or repr. Every call goes
through the provider's `PlatformClient`, which never follows a redirect, so the header
never goes anywhere but the configured URL.

Money is `Decimal`: answers are parsed with `parse_float=Decimal` and budgets are
written as exact JSON numbers (25.1 stays 25.1, never a float). A `null` budget means
"unlimited" on this platform and round-trips as null. Because of that, a missing
budget key cannot be told apart by `None`: a workspace whose answer lacks a setting
is skipped, never reported as unlimited.

Plan gating: the platform answers 403 when the plan lacks a capability (the kill
switch needs Scale; the per-user budget and `max_concurrent_runs` need Pro). Those
403s become `PlanLimited(missing="kill_switch (Scale plan)")` and the like; nothing
here retries, and the retry layer retries only `ProviderUnavailable`.

Spend: this platform shows settings, not spend. Spend arrives through a separate
feed, keyed by the workspace's native id (its UUID). The adapter does not observe
spend and does not declare `Capability.SPEND`; `spend_source = "feed"` says where the
daemon must look instead. No hook takes spend records: the adapter has nothing to do
with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol, runtime_checkable

import aiohttp

from warden.errors import (
    BadAnswer,
    PlanLimited,
    ProviderError,
    ProviderRejected,
    WorkspaceGone,
)
from warden.model import State, Workspace, WorkspaceId
from warden.policy.models import AgentRunProvider
from warden.providers.base import Capability, ListFilter, Observation, Skipped
from warden.providers.client import BearerAuth, Clocks, PlatformClient, Refusal

CAPABILITIES = frozenset(
    {
        Capability.KILL_SWITCH,
        Capability.SET_LIMITS,
        Capability.STOP,
        Capability.START,
        Capability.SPEND_FEED,
    }
)
WORKSPACE = "/v1/workspace/"
KILL_SWITCH = "/v1/workspace/kill-switch"
ORG_OWNER = "org"  # the owner of a workspace that names no slug: the whole organisation

MONEY_FIELDS = ("daily_budget_usd", "user_daily_budget_usd")
LIMIT_FIELDS = (*MONEY_FIELDS, "max_concurrent_runs")
# What each plan-gated request needs, as `PlanLimited.missing` names it.
KILL_SWITCH_GATE = "kill_switch (Scale plan)"
PRO_GATED = ("user_daily_budget_usd", "max_concurrent_runs")

Limit = Decimal | int | None  # a budget (None = unlimited) or a number of runs


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRunSettings:
    """The workspace as the platform describes it (`WorkspaceResponse`)."""

    id: str
    name: str
    slug: str | None
    kill_switch: bool
    daily_budget_usd: Decimal | None  # None = unlimited
    user_daily_budget_usd: Decimal | None  # None = unlimited
    max_concurrent_runs: int

    def limits(self) -> dict[str, Limit]:
        """The three settings a throttle may change, by their platform names."""
        return {key: getattr(self, key) for key in LIMIT_FIELDS}


@dataclass(frozen=True, slots=True, kw_only=True)
class Replaced:
    """What a throttle replaced: enough for `restore` to undo exactly that, later.

    `previous` holds the values before the throttle (None = unlimited), `applied` the
    values the platform reported after it, for the same keys. The store keeps it as
    `to_json()`; budgets are written as strings there so that no float touches them.
    """

    workspace: str  # the native id the throttle acted on
    previous: Mapping[str, Limit] = field(default_factory=dict)
    applied: Mapping[str, Limit] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data: budgets as decimal strings, runs as integers, unlimited as null."""
        return {
            "workspace": self.workspace,
            "previous": {key: _limit_to_json(value) for key, value in self.previous.items()},
            "applied": {key: _limit_to_json(value) for key, value in self.applied.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Replaced:
        """The inverse of `to_json`; ValueError when the data is not what it wrote."""
        workspace = data.get("workspace")
        if not isinstance(workspace, str) or not workspace:
            raise ValueError("`workspace` is missing")
        previous, applied = data.get("previous"), data.get("applied")
        if not isinstance(previous, Mapping) or not isinstance(applied, Mapping):
            raise ValueError("`previous` and `applied` must be objects")
        if set(previous) != set(applied) or not set(previous) <= set(LIMIT_FIELDS):
            raise ValueError(f"expected the same keys among {LIMIT_FIELDS} in both")
        return cls(
            workspace=workspace,
            previous={key: _limit_from_json(key, value) for key, value in previous.items()},
            applied={key: _limit_from_json(key, value) for key, value in applied.items()},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Restored:
    """What `restore` did: the settings after it, and what it left as a person set it."""

    settings: AgentRunSettings
    kept: frozenset[str] = frozenset()  # changed by someone since the throttle: left alone


@runtime_checkable
class KillSwitchCapable(Protocol):
    """A provider with a switch that blocks all work at once."""

    async def set_kill_switch(self, active: bool) -> AgentRunSettings: ...


@runtime_checkable
class LimitsCapable(Protocol):
    """A provider whose limits can be lowered, and put back exactly as they were."""

    async def throttle(
        self,
        *,
        max_concurrent_runs: int | None = None,
        daily_budget_usd: Decimal | None = None,
        user_daily_budget_usd: Decimal | None = None,
    ) -> Replaced: ...

    async def restore(self, replaced: Replaced) -> Restored: ...


class AgentRunAdapter:
    """One agent-run workspace, as named in the policy file."""

    kind = "agentrun"
    capabilities = CAPABILITIES
    spend_source: Literal["feed"] = "feed"  # spend comes from the separate feed, not observe()

    def __init__(
        self,
        name: str,
        config: AgentRunProvider,
        http: aiohttp.ClientSession,
        *,
        clocks: Clocks | None = None,
    ) -> None:
        self.name = name
        self.client = PlatformClient.for_config(
            name,
            config,
            http,
            base_url=str(config.url).rstrip("/"),
            auth=BearerAuth(config.token.get_secret_value()),
            headers={"Accept": "application/json"},
            clocks=clocks,
        )

    def __repr__(self) -> str:
        return f"AgentRunAdapter({self.name!r}, url={self.client.base_url!r})"

    # ------------------------------------------------------------ the Provider protocol

    async def observe(self, *, now: datetime, filter: ListFilter | None = None) -> Observation:
        """The one workspace this credential reaches; skipped if described badly.

        `filter` is ignored: there is nothing to narrow down on the server.
        """
        with self.client.counting() as tally:
            raw = await self._request("GET", WORKSPACE, what="read the workspace")
        if not isinstance(raw, dict):
            raise BadAnswer(self.name, "read the workspace: the answer is not an object")
        try:
            ws = to_workspace(parse_settings(raw), provider=self.name, now=now)
        except (ValueError, TypeError) as e:
            native = raw.get("id")
            reason = f"workspace described badly: {e}"
            skipped = Skipped(native if isinstance(native, str) else None, reason)
            return Observation(self.name, now, [], [skipped], requests=tally.sent)
        return Observation(self.name, now, [ws], [], requests=tally.sent)

    async def refresh(self, native_id: str, *, now: datetime) -> Workspace:
        """Read the workspace again; WorkspaceGone if the credential now reaches another."""
        settings = await self.read_settings()
        if settings.id != native_id:
            raise WorkspaceGone(
                self.name, f"read {native_id}: the credential now reaches workspace {settings.id}"
            )
        return to_workspace(settings, provider=self.name, now=now)

    async def stop(self, ws: Workspace) -> None:
        """Turn the kill switch on: every run and step is blocked."""
        await self.set_kill_switch(True)

    async def start(self, ws: Workspace) -> None:
        """Turn the kill switch off: runs are accepted again."""
        await self.set_kill_switch(False)

    async def extend(self, ws: Workspace, until: datetime) -> None:
        raise ProviderRejected(self.name, f"extend {ws.ref}: the agent-run platform cannot extend")

    async def aclose(self) -> None:
        """The HTTP session belongs to the daemon; nothing of our own to close."""

    # ------------------------------------------------------------ beyond the protocol

    async def read_settings(self) -> AgentRunSettings:
        """The workspace's settings now; BadAnswer when the platform describes them badly."""
        raw = await self._request("GET", WORKSPACE, what="read the workspace")
        return self._settings_of(raw, what="read the workspace")

    async def set_kill_switch(self, active: bool) -> AgentRunSettings:
        """Turn the kill switch on or off; the answer must show the new state."""
        what = f"turn the kill switch {'on' if active else 'off'}"
        raw = await self._request(
            "POST", KILL_SWITCH, what=what, body={"active": active}, gate=KILL_SWITCH_GATE
        )
        settings = self._settings_of(raw, what=what)
        if settings.kill_switch is not active:
            raise BadAnswer(self.name, f"{what}: the answer still says kill_switch={not active}")
        return settings

    async def throttle(
        self,
        *,
        max_concurrent_runs: int | None = None,
        daily_budget_usd: Decimal | None = None,
        user_daily_budget_usd: Decimal | None = None,
    ) -> Replaced:
        """Change only the limits given (None = leave as is); return what they replaced.

        Reads the settings first (the platform's PATCH answer shows only the new values),
        then PATCHes. Not safe to repeat blindly after a lost answer: a second throttle
        would remember the throttled values as the previous ones.
        """
        changes = throttle_changes(
            max_concurrent_runs=max_concurrent_runs,
            daily_budget_usd=daily_budget_usd,
            user_daily_budget_usd=user_daily_budget_usd,
        )
        before = await self.read_settings()
        after = await self._patch(changes, what=f"throttle {', '.join(sorted(changes))}")
        return Replaced(
            workspace=before.id,
            previous={key: before.limits()[key] for key in changes},
            applied={key: after.limits()[key] for key in changes},
        )

    async def restore(self, replaced: Replaced) -> Restored:
        """Put back what `replaced` records, except what a person has changed since.

        A setting still at the throttled value is PATCHed back (null stays null); one
        already back at its previous value needs nothing; one at any other value was
        set by someone else after the throttle and is kept, as Warden never undoes a
        person's change.
        """
        current = await self.read_settings()
        if current.id != replaced.workspace:
            raise WorkspaceGone(
                self.name,
                f"restore {replaced.workspace}: the credential now reaches workspace {current.id}",
            )
        now_values = current.limits()
        back = {
            key: value
            for key, value in replaced.previous.items()
            if now_values[key] != value and now_values[key] == replaced.applied.get(key)
        }
        kept = {
            key
            for key, value in replaced.previous.items()
            if now_values[key] != value and key not in back
        }
        settings = (
            await self._patch(back, what=f"restore {', '.join(sorted(back))}") if back else current
        )
        return Restored(settings=settings, kept=frozenset(kept))

    # ------------------------------------------------------------ HTTP

    async def _patch(self, changes: Mapping[str, Limit], *, what: str) -> AgentRunSettings:
        gated = [key for key in PRO_GATED if key in changes]
        gate = f"{' and '.join(gated)} (Pro plan)" if gated else None
        raw = await self._request("PATCH", WORKSPACE, what=what, body=changes, gate=gate)
        return self._settings_of(raw, what=what)

    def _settings_of(self, raw: Any, *, what: str) -> AgentRunSettings:
        try:
            return parse_settings(raw)
        except (ValueError, TypeError) as e:
            raise BadAnswer(self.name, f"{what}: {e}") from e

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: Mapping[str, Any] | None = None,
        gate: str | None = None,
    ) -> Any:
        """One call; `gate` names what a 403 means the plan lacks (PlanLimited)."""
        return await self.client.request(
            method,
            path,
            what=what,
            json=body,
            refusal=None if gate is None else self._plan_gate(what, gate),
        )

    def _plan_gate(self, what: str, gate: str) -> Refusal:
        def refused(status: int, said: str) -> ProviderError | None:
            if status != 403:
                return None
            return PlanLimited(
                self.name,
                f"{what}: HTTP 403: the plan lacks {gate}; the platform said: {said}",
                status=403,
                missing=gate,
            )

        return refused


def throttle_changes(
    *,
    max_concurrent_runs: int | None,
    daily_budget_usd: Decimal | None,
    user_daily_budget_usd: Decimal | None,
) -> dict[str, Limit]:
    """The PATCH body of a throttle: only what is given, checked (money is never a float)."""
    changes: dict[str, Limit] = {}
    for key, money in (
        ("daily_budget_usd", daily_budget_usd),
        ("user_daily_budget_usd", user_daily_budget_usd),
    ):
        if money is None:
            continue
        if not isinstance(money, Decimal) or not money.is_finite() or money < 0:
            raise ValueError(f"{key} must be a finite Decimal >= 0, got {money!r}")
        changes[key] = money
    if max_concurrent_runs is not None:
        if (
            isinstance(max_concurrent_runs, bool)
            or not isinstance(max_concurrent_runs, int)
            or max_concurrent_runs < 1
        ):
            raise ValueError(
                f"max_concurrent_runs must be an integer >= 1, got {max_concurrent_runs!r}"
            )
        changes["max_concurrent_runs"] = max_concurrent_runs
    if not changes:
        raise ValueError("throttle needs at least one limit to change")
    return changes


def parse_settings(raw: Any) -> AgentRunSettings:
    """A `WorkspaceResponse`; ValueError/TypeError says what cannot be trusted."""
    if not isinstance(raw, dict):
        raise TypeError("the workspace is not an object")
    slug = raw.get("slug")
    if slug is not None and not isinstance(slug, str):
        raise ValueError(f"`slug` is not a string: {slug!r}")
    kill_switch = _present(raw, "kill_switch")
    if not isinstance(kill_switch, bool):
        raise ValueError(f"unknown kill switch state {kill_switch!r}")
    runs = _present(raw, "max_concurrent_runs")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 0:
        raise ValueError(f"`max_concurrent_runs` is not a non-negative integer: {runs!r}")
    return AgentRunSettings(
        id=_text(raw, "id"),
        name=_text(raw, "name"),
        slug=slug or None,
        kill_switch=kill_switch,
        daily_budget_usd=_money(raw, "daily_budget_usd"),
        user_daily_budget_usd=_money(raw, "user_daily_budget_usd"),
        max_concurrent_runs=runs,
    )


def to_workspace(settings: AgentRunSettings, *, provider: str, now: datetime) -> Workspace:
    """The neutral snapshot: the kill switch is the state; the settings are facts.

    The platform says nothing of activity, start times or cost, so those stay None:
    idle and lifetime policies never act on it; budget policies (through the spend
    feed) and the kill switch do.
    """
    return Workspace(
        id=WorkspaceId(provider, settings.id),
        kind="agentrun",
        name=settings.name,
        owner=settings.slug or ORG_OWNER,
        state=State.STOPPED if settings.kill_switch else State.RUNNING,
        observed_at=now,
        facts={
            "slug": settings.slug,
            "kill_switch": settings.kill_switch,
            # None = unlimited here: the platform said so (a missing one is skipped).
            "daily_budget_usd": settings.daily_budget_usd,
            "user_daily_budget_usd": settings.user_daily_budget_usd,
            "max_concurrent_runs": settings.max_concurrent_runs,
        },
    )


def _present(raw: Mapping[str, Any], key: str) -> Any:
    if key not in raw:
        raise ValueError(f"`{key}` is missing")
    return raw[key]


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = _present(raw, key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{key}` is missing or empty")
    return value


def _money(raw: Mapping[str, Any], key: str) -> Decimal | None:
    """A budget: None only when the platform says null (unlimited), never when missing."""
    value = _present(raw, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"`{key}` is not a number: {value!r}")
    money = Decimal(value)
    if money < 0:
        raise ValueError(f"`{key}` is negative: {money}")
    return money


def _limit_to_json(value: Limit) -> str | int | None:
    return str(value) if isinstance(value, Decimal) else value


def _limit_from_json(key: str, value: Any) -> Limit:
    if value is None:
        if key == "max_concurrent_runs":
            raise ValueError("`max_concurrent_runs` cannot be null")
        return None
    if key == "max_concurrent_runs":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`max_concurrent_runs` is not an integer: {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"`{key}` is not a decimal string: {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(f"`{key}` is not a decimal string: {value!r}") from None
