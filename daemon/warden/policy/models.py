"""The policy file as pydantic models: what admins may write, and nothing else.

Unknown keys are errors (`extra="forbid"`) so that a typo never silently disables a
rule. Cross-references (a policy naming a schedule, a sink or a provider) are checked
by `references()` after every file of a set is read, so that errors name the line.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
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


def _as_list(value: Any) -> Any:
    """Let admins write `owner: alice` for `owner: [alice]`."""
    return [value] if isinstance(value, str) else value


def _as_selector_list(value: Any) -> Any:
    """Let admins write one `exclude` selector for a list of one (or null for none)."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else value


# ---------------------------------------------------------------- providers


class ProviderBase(Strict):
    url: AnyHttpUrl
    poll_interval: Duration = Field(default="60s", description="how often to list workspaces")  # type: ignore[assignment]
    timeout: Duration = Field(default="10s", description="per request")  # type: ignore[assignment]
    concurrency: int = Field(default=8, ge=1, le=64, description="requests in flight at once")
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

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"expected an IANA time zone such as Europe/Berlin, got {value!r}"
            ) from None
        return value

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

    _lists = field_validator("provider", "owner", "template", "name", mode="before")(_as_list)


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


class Policy(Strict):
    name: Name
    description: str | None = None
    match: Selector = Selector()
    exclude: list[Selector] = Field(
        default_factory=list, description="leave alone what matches any of these selectors"
    )
    when: When | None = None
    schedule: str | None = Field(default=None, description="the name of a schedule")
    warn_before: Duration | None = None
    snooze: Snooze = Snooze()
    do: Verb = Verb.STOP
    extend: Extend | None = None
    notify: list[str] = Field(default_factory=list, description="sink names")
    dry_run: bool = False

    _notify_list = field_validator("notify", mode="before")(_as_list)
    _exclude_list = field_validator(
        "exclude", mode="before", json_schema_input_type=Selector | list[Selector] | None
    )(_as_selector_list)

    @model_validator(mode="after")
    def _one_trigger(self) -> Policy:
        if (self.when is None) == (self.schedule is None):
            raise ValueError("expected exactly one of `when` or `schedule`")
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
        return self


class GlobalSettings(Strict):
    """Safety rails that apply to every policy."""

    dry_run: bool = Field(default=False, description="observe and decide everywhere, act nowhere")
    max_actions_per_cycle: int = Field(default=20, ge=0, description="per provider and cycle")
    max_percent_per_cycle: Percent = Field(  # type: ignore[assignment]
        default="25%", description="of a provider's running workspaces, per cycle"
    )
    max_staleness: Duration = Field(  # type: ignore[assignment]
        default="10m", description="facts older than this never lead to an action"
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


class PolicyFile(Strict):
    """One YAML file. A directory of files merges into one PolicySet."""

    version: Literal[1] = 1
    settings: GlobalSettings | None = None
    providers: dict[Name, ProviderConfig] = Field(default_factory=dict)
    pricing: dict[Name, Pricing] = Field(
        default_factory=dict, description="by provider name: how its running time is priced"
    )
    schedules: dict[Name, Schedule] = Field(default_factory=dict)
    sinks: dict[Name, SinkConfig] = Field(default_factory=dict)
    policies: list[Policy] = Field(default_factory=list)


SCHEDULE_SPEC = re.compile(
    r"^(?P<days>[A-Za-z]{3}(?:-[A-Za-z]{3})?(?:,[A-Za-z]{3}(?:-[A-Za-z]{3})?)*)\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$"
)
