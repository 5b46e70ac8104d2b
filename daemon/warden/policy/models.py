"""The policy file as pydantic models: what admins may write, and nothing else.

Unknown keys are errors (`extra="forbid"`) so that a typo never silently disables a
rule. Cross-references (a policy naming a schedule, a sink or a provider) are checked
by `references()` after every file of a set is read, so that errors name the line.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from warden.events.signing import SigningSecret
from warden.model import Verb
from warden.policy.durations import Duration, Percent
from warden.policy.schedule import parse_window

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lower-case letters, digits, . _ -")]


class Strict(BaseModel):
    """Frozen, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


# What the schema says a field read by _as_list takes: one name or a list of them.
OneOrMore = str | list[str]


def _as_list(value: Any) -> Any:
    """Let admins write `owner: alice` for `owner: [alice]`."""
    return [value] if isinstance(value, str) else value


def _as_selector_list(value: Any) -> Any:
    """Let admins write one `exclude` selector for a list of one (or null for none)."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else value


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
        raise ValueError(
            f"expected an IANA time zone such as Europe/Berlin, got {value!r}"
        ) from None
    return value


# ---------------------------------------------------------------- providers


class ProviderBase(Strict):
    url: AnyHttpUrl
    poll_interval: Duration = Field(default="60s", description="how often to list workspaces")  # type: ignore[assignment]
    timeout: Duration = Field(default="10s", description="per request")  # type: ignore[assignment]
    concurrency: int = Field(default=8, ge=1, le=64, description="requests in flight at once")
    max_pages: int = Field(
        default=2000, ge=1, le=100_000, description="a listing reads at most this many pages"
    )
    max_answer_bytes: int = Field(
        default=32 * 2**20,
        ge=2**16,
        le=2**30,
        description="an answer larger than this is refused (provider.answer_rejected)",
    )
    dry_run: bool = Field(default=False, description="observe and decide, never act")


class CoderProvider(ProviderBase):
    type: Literal["coder"]
    token: SecretStr = Field(description="a Coder session token, e.g. ${CODER_TOKEN}")
    page_size: int = Field(default=100, ge=1, le=1000)


class StronglyProvider(ProviderBase):
    type: Literal["strongly"]
    api_key: SecretStr = Field(description="an X-API-Key with workspaces:read/write scopes")
    page_size: int = Field(default=100, ge=1, le=1000)


class MageProvider(ProviderBase):
    type: Literal["mage"]
    api_key: SecretStr | None = None
    token: SecretStr | None = None
    cluster_type: Literal["k8s", "ecs", "cloud_run"] | None = Field(
        default=None,
        description="sent as ?cluster_type= on every workspace call; needed when the "
        "manager runs with MAGE_IS_MANAGE_INSTANCE=1",
    )


class MageCloudProvider(ProviderBase):
    type: Literal["mage-cloud"]
    api_key: SecretStr
    email: str
    password: SecretStr
    team: str
    clusters: list[str] = Field(min_length=1)


class AgentRunProvider(ProviderBase):
    type: Literal["agentrun"]
    token: SecretStr = Field(description="a JWT or API key")


ProviderConfig = Annotated[
    CoderProvider | StronglyProvider | MageProvider | MageCloudProvider | AgentRunProvider,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- schedules and sinks


class Schedule(Strict):
    """Office hours: workspaces are stopped at closing and resumed at opening."""

    timezone: str = Field(description="an IANA time zone such as Europe/Berlin")
    open: list[str] = Field(min_length=1, description='e.g. ["Mon-Fri 08:00-19:00"]')
    holidays: str | None = Field(
        default=None, description="closed all day on this country's public holidays: DE, US-CA"
    )
    misfire_grace: Duration = Field(  # type: ignore[assignment]
        default="15m", description="act on an edge missed while Warden was down, if this recent"
    )

    _zone = field_validator("timezone")(_known_zone)

    @field_validator("open")
    @classmethod
    def _valid_windows(cls, value: list[str]) -> list[str]:
        for spec in value:
            parse_window(spec)  # raises ValueError naming what is wrong
        return value


SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]


class SinkBase(Strict):
    min_severity: Severity = "info"


class WebhookSink(SinkBase):
    type: Literal["webhook"]
    url: AnyHttpUrl
    secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks signing secret: whsec_<base64>"
    )

    @field_validator("secret")
    @classmethod
    def _signing_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """Refused at load, with file:line, rather than at the first delivery."""
        if value is not None:
            SigningSecret.parse(value.get_secret_value())
        return value


class SlackSink(SinkBase):
    type: Literal["slack"]
    url: SecretStr = Field(description="the incoming-webhook URL (a secret: it carries the token)")


class PagerDutySink(SinkBase):
    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: AnyHttpUrl = AnyHttpUrl("https://events.pagerduty.com/v2/enqueue")


class LogSink(SinkBase):
    type: Literal["log"]


SinkConfig = Annotated[
    WebhookSink | SlackSink | PagerDutySink | LogSink, Field(discriminator="type")
]


# ---------------------------------------------------------------- policies


class Selector(Strict):
    """Which workspaces a policy covers; every given field must match (AND)."""

    provider: list[str] | None = None
    owner: list[str] | None = None
    template: list[str] | None = None
    name: list[str] | None = Field(default=None, description="glob patterns: gpu-*")
    labels: dict[str, str] | None = Field(default=None, description="every label must equal")

    _lists = field_validator(
        "provider",
        "owner",
        "template",
        "name",
        mode="before",
        json_schema_input_type=OneOrMore | None,
    )(_as_list)


TRIGGERS = ("idle_for", "running_for", "gpu_below", "cpu_below")


class When(Strict):
    """The trigger: exactly one of idle_for, running_for, gpu_below, cpu_below."""

    idle_for: Duration | None = Field(
        default=None, description="no platform activity for this long"
    )
    running_for: Duration | None = Field(default=None, description="running for longer than this")
    gpu_below: Percent | None = Field(
        default=None, description="GPU utilisation under this percentage for `for`"
    )
    cpu_below: Percent | None = Field(
        default=None, description="CPU utilisation under this percentage for `for`"
    )
    for_: Duration | None = Field(
        default=None,
        alias="for",
        le=timedelta(hours=24),  # samples are kept a day
        description="how long utilisation must stay below (with gpu_below or cpu_below)",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> When:
        given = [name for name in TRIGGERS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one of {', '.join(TRIGGERS)}; got {given or 'none'}"
            )
        below = given[0] in ("gpu_below", "cpu_below")
        if below and self.for_ is None:
            raise ValueError(f"{given[0]} needs `for`: how long it must stay below, such as 30m")
        if not below and self.for_ is not None:
            raise ValueError("`for` goes with gpu_below or cpu_below only")
        return self

    @property
    def metric(self) -> str | None:
        """The utilisation metric a *_below trigger watches ("gpu", "cpu"), else None."""
        if self.gpu_below is not None:
            return "gpu"
        return "cpu" if self.cpu_below is not None else None


class Extend(Strict):
    """Push the platform's deadline by `by`, at most `max` times, before stopping."""

    by: Duration
    max: int = Field(ge=1, le=100)


class Snooze(Strict):
    """What the owner's snooze link does."""

    by: Duration = Field(default="1h")  # type: ignore[assignment]
    max: int = Field(default=3, ge=0, le=100, description="0 disables snoozing")


class KeepAlive(Strict):
    """How long an owner's keep-alive may hold this policy's stop (idle and utilisation
    policies only): at most `max` after it was asked for, however long it asked."""

    max: Duration = Field(  # type: ignore[assignment]
        default="8h",
        le=timedelta(days=30),
        description="the longest a keep-alive holds this policy's stop; 0s ignores keep-alives",
    )

    def held_until(self, at: datetime | None, until: datetime | None) -> datetime | None:
        """Until when a keep-alive asked for at `at`, to last `until`, holds this policy."""
        if at is None or until is None or not self.max:
            return None
        return min(until, at + self.max)


MIN_MAX_IDLE = timedelta(minutes=1)  # Mage checks idleness once a minute


class Lifecycle(Strict):
    """Mage's own idle termination, kept as written on each matching workspace.

    Written to the workspace's `lifecycle_config.termination_policy` under the seed's
    names; the rest of its lifecycle config (start hooks, fields not given here) stays.
    """

    auto_termination: bool | None = Field(
        default=None,
        description="Mage stops the workspace itself once idle for max_idle "
        "(enable_auto_termination); true when only max_idle is given",
    )
    max_idle: Duration | None = Field(
        default=None, description="idle this long, Mage stops it (max_idle_seconds); at least 1m"
    )

    @model_validator(mode="after")
    def _meaningful(self) -> Lifecycle:
        if self.auto_termination is None and self.max_idle is None:
            raise ValueError("expected max_idle, auto_termination or both")
        if self.max_idle is None and self.auto_termination:
            raise ValueError("auto_termination: true needs max_idle: Mage stops nothing without it")
        if self.max_idle is not None and self.max_idle < MIN_MAX_IDLE:
            raise ValueError("max_idle must be at least 1m: Mage checks idleness once a minute")
        return self

    def termination_policy(self) -> dict[str, Any]:
        """The `termination_policy` fields this sets, named as Mage names them."""
        fields: dict[str, Any] = {
            "enable_auto_termination": True
            if self.auto_termination is None
            else self.auto_termination
        }
        if self.max_idle is not None:
            fields["max_idle_seconds"] = int(self.max_idle.total_seconds())
        return fields


_POLICY_VERBS: TypeAdapter[str] = TypeAdapter(Literal["stop", "resume", "extend", "notify"])


def _policy_verb(value: Any) -> Verb:
    return Verb(_POLICY_VERBS.validate_python(value))


# What a policy may do to a workspace; throttle and restore belong to budgets.
# Written as a Literal so that errors list these four; read as the Verb it names.
PolicyVerb = Annotated[
    Verb,
    BeforeValidator(_policy_verb),
    WithJsonSchema({"enum": ["stop", "resume", "extend", "notify"]}),
]


POLICY_KINDS = ("when", "schedule", "lifecycle")
# What acts on a workspace's run state: meaningless for a policy that writes settings.
NOT_WITH_LIFECYCLE = frozenset({"warn_before", "snooze", "do", "extend", "keep_alive"})


class Policy(Strict):
    name: Name
    description: str | None = None
    match: Selector = Selector()
    exclude: list[Selector] = Field(
        default_factory=list, description="leave alone what matches any of these selectors"
    )
    when: When | None = None
    schedule: str | None = Field(default=None, description="the name of a schedule")
    lifecycle: Lifecycle | None = Field(
        default=None, description="keep the platform's own idle termination as written (Mage)"
    )
    warn_before: Duration | None = None
    snooze: Snooze = Snooze()
    keep_alive: KeepAlive = Field(
        default=KeepAlive(),
        description="how long an owner's keep-alive holds this policy's stop (idle_for, "
        "gpu_below and cpu_below policies)",
    )
    do: PolicyVerb = Verb.STOP
    extend: Extend | None = None
    notify: list[str] = Field(default_factory=list, description="sink names")
    dry_run: bool = False

    _notify_list = field_validator("notify", mode="before", json_schema_input_type=OneOrMore)(
        _as_list
    )
    _exclude_list = field_validator(
        "exclude", mode="before", json_schema_input_type=Selector | list[Selector] | None
    )(_as_selector_list)

    @model_validator(mode="after")
    def _one_trigger(self) -> Policy:
        given = [key for key in POLICY_KINDS if getattr(self, key) is not None]
        if len(given) != 1:
            found = ", ".join(f"`{key}`" for key in given) if given else "none"
            raise ValueError(
                f"expected exactly one of `when`, `schedule` or `lifecycle`; got {found}"
            )
        if self.lifecycle is not None and (extra := self.model_fields_set & NOT_WITH_LIFECYCLE):
            raise ValueError(
                "a lifecycle policy only writes the platform's settings; it takes no "
                + ", ".join(f"`{key}`" for key in sorted(extra))
            )
        if self.schedule is not None and self.do not in (Verb.STOP, Verb.NOTIFY):
            raise ValueError(
                "a schedule policy stops at closing and resumes at opening: `do` must be stop or notify"
            )
        if self.schedule is not None and self.extend is not None:
            raise ValueError("`extend` applies to `when` triggers, not schedules")
        if self.do is Verb.EXTEND and self.extend is None:
            raise ValueError("`do: extend` needs `extend: {by, max}`")
        if self.do is Verb.RESUME and self.when is not None:
            raise ValueError("`do: resume` belongs to schedules (resume at opening), not `when`")
        if "keep_alive" in self.model_fields_set and not self.respects_keep_alive:
            raise ValueError(
                "`keep_alive` applies to idle_for, gpu_below and cpu_below policies: a "
                "keep-alive says a workspace is in use, which lifetimes and schedules ignore"
            )
        return self

    @property
    def respects_keep_alive(self) -> bool:
        """Idle and utilisation policies hold their stop for a keep-alive; others do not."""
        return self.when is not None and self.when.running_for is None


class GlobalSettings(Strict):
    """Safety rails that apply to every policy."""

    dry_run: bool = Field(default=False, description="observe and decide everywhere, act nowhere")
    max_actions_per_cycle: int = Field(
        default=20, ge=0, description="stops and resumes per provider and cycle; more wait"
    )
    max_percent_per_cycle: Percent = Field(  # type: ignore[assignment]
        default="25%",
        description="a policy asking for more than this share of a provider's running "
        "workspaces in one cycle (and more than min_actions_per_cycle, and more than "
        "surge_factor times its usual) is held until an admin releases it",
    )
    min_actions_per_cycle: int = Field(
        default=5, ge=1, description="a policy may always stop or resume this many in a cycle"
    )
    surge_factor: int = Field(
        default=2,
        ge=1,
        description="a policy may ask for this many times the most it did in one cycle "
        "over the last week",
    )
    max_staleness: Duration = Field(  # type: ignore[assignment]
        default="10m", description="facts older than this never lead to an action"
    )
    savings_horizon: Duration = Field(  # type: ignore[assignment]
        default="8h",
        description="a stop's avoided spend counts the time it stayed stopped, at most this "
        "long (what it would have run is a guess beyond a working day)",
    )


Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)]


class Pricing(Strict):
    """How running time becomes money on one provider (USD per hour unless named)."""

    currency: Literal["USD"] = "USD"
    usd_per_credit: Money | None = Field(
        default=None, description="the platform's own cost figure (Coder daily_cost credits)"
    )
    cpu_hour: Money | None = Field(default=None, description="per CPU core and hour")
    memory_gib_hour: Money | None = Field(default=None, description="per GiB of memory and hour")
    gpu_hour: dict[str, Money] = Field(
        default_factory=dict, description="per GPU and hour, by GPU type: {nvidia-a10g: 1.10}"
    )
    template_hour: dict[str, Money] = Field(
        default_factory=dict, description="a flat rate per hour by template or instance type"
    )


# ---------------------------------------------------------------- budgets

BUDGET_SCOPES = ("workspace", "owner", "project", "template", "provider", "all")
LABEL_SCOPE = re.compile(r"^label:(?P<key>[A-Za-z0-9][A-Za-z0-9._/-]{0,62})$")


class Budget(Strict):
    """How much one scope may spend in one window of local time."""

    per: str = Field(
        description="the scope each limit applies to: workspace, owner, project, template, "
        "provider, all, or label:KEY (one limit per value of that label)"
    )
    window: Literal["day", "week", "month"] = Field(
        description="resets at local midnight; a week starts on Monday, a month on its 1st"
    )
    limit_usd: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=6)]
    timezone: str = Field(default="UTC", description="an IANA time zone such as Europe/Berlin")

    _zone = field_validator("timezone")(_known_zone)

    @field_validator("per")
    @classmethod
    def _known_scope(cls, value: str) -> str:
        if value in BUDGET_SCOPES or LABEL_SCOPE.fullmatch(value):
            return value
        raise ValueError(
            f"unknown scope {value!r}: expected one of {', '.join(BUDGET_SCOPES)}, or label:KEY"
        )


class Throttle(Strict):
    """The agent-run platform's limits to lower (each put back exactly at the reset)."""

    max_concurrent_runs: int | None = Field(default=None, ge=1)
    daily_budget_usd: Money | None = None
    user_daily_budget_usd: Money | None = None

    @model_validator(mode="after")
    def _something(self) -> Throttle:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(
                "expected at least one of max_concurrent_runs, daily_budget_usd, "
                "user_daily_budget_usd"
            )
        return self


BUDGET_ACTIONS = ("notify", "stop", "throttle", "kill_switch")


class Threshold(Strict):
    """A share of the limit, and what happens the first time spend reaches it in a window."""

    at: Percent = Field(description="a share of limit_usd, such as 80%")
    forecast: bool = Field(
        default=False,
        description="fire when the burn rate projects reaching `at` before the window ends",
    )
    notify: list[str] = Field(default_factory=list, description="sink names")
    do: Literal["notify", "stop", "throttle", "kill_switch"] = "notify"
    throttle: Throttle | None = Field(default=None, description="with do: throttle")
    target: Selector | None = Field(
        default=None,
        description="act on these workspaces instead of the scope's own: an org-wide budget "
        "may turn on the kill switch of one agent-run platform",
    )

    _notify_list = field_validator("notify", mode="before", json_schema_input_type=OneOrMore)(
        _as_list
    )

    @model_validator(mode="after")
    def _coherent(self) -> Threshold:
        if self.at <= 0:
            raise ValueError("`at` must be more than 0%")
        if self.forecast and self.do != "notify":
            raise ValueError(
                "a forecast threshold only notifies: acting on a projection would stop work "
                "that may never cross"
            )
        if (self.do == "throttle") != (self.throttle is not None):
            raise ValueError("`do: throttle` goes with `throttle: {max_concurrent_runs: ...}`")
        if self.do == "notify" and self.target is not None:
            raise ValueError("`target` names the workspaces an action applies to; notify has none")
        return self


class BudgetPolicy(Strict):
    """A spend limit per scope and window, with thresholds that notify or act."""

    name: Name
    description: str | None = None
    match: Selector = Selector()
    exclude: list[Selector] = Field(
        default_factory=list, description="spend of what matches any of these does not count"
    )
    budget: Budget
    thresholds: list[Threshold] = Field(min_length=1)
    dry_run: bool = False

    _exclude_list = field_validator(
        "exclude", mode="before", json_schema_input_type=Selector | list[Selector] | None
    )(_as_selector_list)

    @property
    def notify(self) -> list[str]:
        """Every sink any threshold names: where this budget's actions are told."""
        return sorted({sink for t in self.thresholds for sink in t.notify})


# ---------------------------------------------------------------- spend feeds

MIN_FEED_INTERVAL = timedelta(seconds=30)


class SpendFeed(Strict):
    """Spend Warden cannot observe (the agent-run platform's runs), read from a URL.

    The URL answers `{"records": [...]}`, the body `POST /v1/spend` takes; each record's
    `id` counts once per provider, however often the feed repeats it.
    """

    url: AnyHttpUrl = Field(description='answers {"records": [...]} to GET')
    provider: Name = Field(description="the provider instance the records belong to")
    interval: Duration = Field(default="5m", description="how often to read the feed")  # type: ignore[assignment]
    token: SecretStr | None = Field(
        default=None, description="sent as Authorization: Bearer, e.g. ${RUNS_FEED_TOKEN}"
    )
    timeout: Duration = Field(default="10s", description="for the whole request")  # type: ignore[assignment]
    max_lag: Duration = Field(  # type: ignore[assignment]
        default="2h",
        description="its data older than this (its `as_of`, else its last good read) is told "
        "once per episode as warden.spend.feed_lagging",
    )

    @field_validator("interval")
    @classmethod
    def _not_too_often(cls, value: timedelta) -> timedelta:
        if value < MIN_FEED_INTERVAL:
            raise ValueError("expected at least 30s: a feed is polled, not streamed")
        return value

    @field_validator("timeout")
    @classmethod
    def _within_the_interval(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        # `interval` is validated first (declared first); absent when it was wrong itself.
        interval = info.data.get("interval")
        if value < timedelta(seconds=1) or (interval is not None and value > interval):
            raise ValueError("expected at least 1s and at most the feed's interval")
        return value


DIGEST_EVERY = ("day", "week", "month")


class Digest(Strict):
    """A periodic event per owner: what ran, what it cost, what Warden stopped and
    avoided, and what is due. Its figures are whole UTC days, as `warden spend` counts."""

    every: Literal["day", "week", "month"] = Field(
        default="week", description="the period it covers: a UTC day, ISO week or month"
    )
    at: str = Field(
        default="09:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="when it is sent, on the first day after the period, in `timezone`",
    )
    timezone: str = Field(default="UTC", description="of `at`: an IANA time zone")
    match: Selector = Field(default=Selector(), description="the workspaces it tells of")
    notify: list[str] = Field(min_length=1, description="the sinks it goes to")

    _zone = field_validator("timezone")(_known_zone)
    _notify_list = field_validator("notify", mode="before", json_schema_input_type=OneOrMore)(
        _as_list
    )


class PolicyFile(Strict):
    """One YAML file. A directory of files merges into one PolicySet."""

    version: Literal[1] = 1
    settings: GlobalSettings | None = None
    providers: dict[Name, ProviderConfig] = Field(default_factory=dict)
    pricing: dict[Name, Pricing] = Field(
        default_factory=dict, description="by provider name: how its running time is priced"
    )
    spend_feeds: dict[Name, SpendFeed] = Field(
        default_factory=dict, description="spend read from URLs, for what Warden cannot price"
    )
    schedules: dict[Name, Schedule] = Field(default_factory=dict)
    sinks: dict[Name, SinkConfig] = Field(default_factory=dict)
    policies: list[Policy] = Field(default_factory=list)
    budgets: list[BudgetPolicy] = Field(default_factory=list)
    digests: dict[Name, Digest] = Field(
        default_factory=dict, description="periodic per-owner digests, by name"
    )


SCHEDULE_SPEC = re.compile(
    r"^(?P<days>[A-Za-z]{3}(?:-[A-Za-z]{3})?(?:,[A-Za-z]{3}(?:-[A-Za-z]{3})?)*)\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$"
)
