"""The sinks: each turns a batch of CloudEvents into one request, and sends it.

- `webhook`: the CloudEvent itself (structured JSON mode), one per request, signed
  with Standard Webhooks; `webhook-id` is the event id, the same on every retry.
- `slack`: an incoming-webhook message people can read: what happened, why, when the
  action falls due and how to snooze it; a group becomes one message with a line each.
- `pagerduty`: an Events API v2 `trigger` with a dedup_key per incident, or the
  `resolve` that ends it (`warden/provider-unreachable/<provider>`).
- `log`: a structlog line per event, no request: the local audit trail.

Building a request is pure (`outbound`); `send` is the only I/O and never raises:
whatever happens becomes an `Attempt`. Errors never hold the Slack URL (a secret)
nor a receiver's whole answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import aiohttp
import structlog

from warden.errors import excerpt
from warden.events import catalogue as ev
from warden.events.envelope import CONTENT_TYPE, encode
from warden.events.routing import ABOUT_A_SINK, RESOLVES
from warden.events.signing import SigningSecret, webhook_headers
from warden.policy.durations import format_duration
from warden.policy.models import LogSink, PagerDutySink, SinkConfig, SlackSink, WebhookSink
from warden.providers.http import parse_retry_after

log = structlog.get_logger(__name__)

CloudEvent = Mapping[str, Any]  # as `envelope.cloud_event` builds it
USER_AGENT: Final = "warden-events/1"
JSON: Final = "application/json"
GROUP_LINES: Final = 20  # a grouped Slack message lists this many, then counts the rest
SLACK_TEXT_LIMIT: Final = 2900  # a section's text may hold 3000 characters
PD_SUMMARY_LIMIT: Final = 1024
ERROR_BODY: Final = 4096  # bytes of an error answer read for the message


@dataclass(frozen=True, slots=True)
class Outbound:
    """One POST for one batch. `hidden` lists text no error message may show."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    hidden: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What one attempt gave: acknowledged, gone (410), or worth retrying."""

    ok: bool
    gone: bool = False
    status: int | None = None
    retry_after: timedelta | None = None
    error: str | None = None


DELIVERED: Final = Attempt(ok=True)


# ---------------------------------------------------------------- requests


def outbound(sink: SinkConfig, events: Sequence[CloudEvent], *, now: datetime) -> Outbound | None:
    """The request that delivers `events` (one batch) to `sink`; None for a log sink."""
    if isinstance(sink, WebhookSink):
        return webhook_request(sink, events, now=now)
    if isinstance(sink, SlackSink):
        body = encode(slack_message(events, now=now))
        url = sink.url.get_secret_value()
        return Outbound(url, body, _json_headers(), hidden=(url,))
    if isinstance(sink, PagerDutySink):
        key = sink.routing_key.get_secret_value()
        body = encode(pagerduty_event(key, events))
        return Outbound(str(sink.url), body, _json_headers(), hidden=(key,))
    assert isinstance(sink, LogSink)
    return None


def webhook_request(sink: WebhookSink, events: Sequence[CloudEvent], *, now: datetime) -> Outbound:
    if len(events) != 1:
        raise ValueError("a webhook request carries exactly one event")
    [event] = events
    body = encode(event)
    secret = None if sink.secret is None else SigningSecret.parse(sink.secret.get_secret_value())
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        **webhook_headers(secret, msg_id=str(event["id"]), now=now, body=body),
    }
    return Outbound(str(sink.url), body, headers)


def _json_headers() -> dict[str, str]:
    return {"Content-Type": JSON, "User-Agent": USER_AGENT}


def log_events(sink_name: str, events: Sequence[CloudEvent]) -> None:
    """The log sink: one structured line per event."""
    for event in events:
        log.info(
            "event.logged",
            sink=sink_name,
            event_id=event["id"],
            event_type=event["type"],
            subject=event["subject"],
            severity=event.get("severity"),
            time=event["time"],
            data=event["data"],
        )


# ---------------------------------------------------------------- sending


async def send(
    http: aiohttp.ClientSession, request: Outbound, *, time_limit: timedelta, now: datetime
) -> Attempt:
    """POST `request` within `time_limit`; 2xx is delivered, 410 is gone, anything else
    (an error status, a refused or dropped connection, no answer in time) is retried."""
    try:
        async with http.post(
            request.url,
            data=request.body,
            headers=dict(request.headers),
            timeout=aiohttp.ClientTimeout(total=time_limit.total_seconds()),
            allow_redirects=False,
            raise_for_status=False,
        ) as resp:
            if 200 <= resp.status < 300:
                return DELIVERED
            body = await _error_body(resp)
            return Attempt(
                ok=False,
                gone=resp.status == 410,
                status=resp.status,
                retry_after=parse_retry_after(resp.headers.get("Retry-After"), now=now),
                error=_hide(f"HTTP {resp.status}: {body}", request.hidden),
            )
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        # ValueError: aiohttp refuses some malformed URLs before connecting.
        what = "timed out" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
        return Attempt(ok=False, error=_hide(excerpt(what), request.hidden))


async def _error_body(resp: aiohttp.ClientResponse) -> str:
    try:
        raw = await resp.content.read(ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        return "(answer cut short)"
    return excerpt(raw.decode("utf-8", errors="replace")) or "(no body)"


def _hide(text: str, hidden: Sequence[str]) -> str:
    for secret in hidden:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


# ---------------------------------------------------------------- reading events


def _data(event: CloudEvent) -> Mapping[str, Any]:
    data = event.get("data")
    return data if isinstance(data, Mapping) else {}


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _link(data: Mapping[str, Any], name: str) -> str | None:
    links = data.get("links")
    return _text(links, name) if isinstance(links, Mapping) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _subject(event: CloudEvent) -> str:
    data = _data(event)
    return _text(data, "workspace") or _text(data, "provider") or str(event.get("subject", ""))


# What each type says in one line: {0} is the subject, {1} the action.
_SAY: Final[Mapping[str, str]] = {
    ev.WORKSPACE_WARNED: "{0} will be {1}",
    ev.WORKSPACE_WARNING_CLEARED: "{0}: the warning no longer applies",
    ev.WORKSPACE_STOPPED: "Stopped {0}",
    ev.WORKSPACE_RESUMED: "Resumed {0}",
    ev.WORKSPACE_EXTENDED: "Extended {0}",
    ev.WORKSPACE_NOTIFIED: "{0} crossed a limit",
    ev.WORKSPACE_SKIPPED: "Left {0} alone",
    ev.WORKSPACE_SNOOZED: "{0} was snoozed",
    ev.WORKSPACE_KEPT_ALIVE: "{0} is kept alive",
    ev.SPEND_FEED_LAGGING: "Spend feed {3} is lagging",
    ev.ACTION_PLANNED: "Dry run: would have {1} {0}",
    ev.ACTION_FAILED: "Could not {1} {0}",
    ev.ACTION_HELD: "Held back: {1} {0}",
    ev.PROVIDER_UNREACHABLE: "Provider {0} is unreachable",
    ev.PROVIDER_RECOVERED: "Provider {0} is reachable again",
    ev.PROVIDER_ANSWER_REJECTED: "An answer of provider {0} was rejected",
    ev.POLICY_REJECTED: "The policy files were rejected; the last good set stays",
    ev.POLICY_LOADED: "Policy files loaded",
    ev.SINK_DISABLED: "Sink {0} was disabled",
    ev.EVENT_DEAD_LETTERED: "An event could not be delivered to sink {0}",
}
_EMOJI: Final[Mapping[str, str]] = {"info": ":information_source:", "warning": ":warning:"}
_PAST: Final[Mapping[str, str]] = {
    "stop": "stopped",
    "resume": "resumed",
    "extend": "extended",
    "notify": "notified",
}


def headline(event: CloudEvent) -> str:
    """What happened, in one plain line."""
    data = _data(event)
    if event.get("type") == ev.OWNER_DIGEST:
        return digest_headline(data)
    if event.get("type") == ev.BUDGET_THRESHOLD_CROSSED:
        return (
            f"Budget {data.get('budget')}: {data.get('scope')} reached {data.get('at')} "
            f"({data.get('percent')} spent)"
        )
    if event.get("type") == ev.BUDGET_WINDOW_RESET:
        return f"Budget {data.get('budget')}: the window of {data.get('scope')} reset"
    subject = _text(data, "sink") if event.get("type") in ABOUT_A_SINK else None
    template = _SAY.get(str(event.get("type")), "{2} about {0}")
    return template.format(
        subject or _subject(event), _action(event), event.get("type"), _text(data, "feed")
    )


def _action(event: CloudEvent) -> str:
    """The action as the headlines need it: `stop`, or `stopped` after "will be"."""
    action = _text(_data(event), "action") or "act on"
    if event.get("type") in (ev.WORKSPACE_WARNED, ev.ACTION_PLANNED):
        return _PAST.get(action, action)
    return action


def _why(data: Mapping[str, Any]) -> str | None:
    for key in ("reason", "held_because", "error"):
        if text := _text(data, key):
            return text
    problems = data.get("problems")
    if isinstance(problems, list) and problems:
        return "; ".join(str(p) for p in problems[:5])
    return None


def _when(data: Mapping[str, Any], now: datetime) -> str | None:
    due = (
        _time(data.get("due_at"))
        or _time(data.get("snoozed_until"))
        or _time(data.get("until"))  # a keep-alive's end
    )
    if due is None:
        return None
    stamp = f"{due:%Y-%m-%d %H:%M} UTC"
    left = due - now
    return f"{stamp} (in {format_duration(left)})" if left > timedelta(0) else stamp


# ---------------------------------------------------------------- Slack


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its documents ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{_mrkdwn(label)}>"


def _snooze_label(data: Mapping[str, Any]) -> str:
    snooze = data.get("snooze")
    by = snooze.get("by") if isinstance(snooze, Mapping) else None
    return f"Snooze {by}" if isinstance(by, str) else "Snooze"


def _usd(value: Any) -> str:
    try:
        return f"${Decimal(str(value)).quantize(Decimal('0.01')):,}"
    except ArithmeticError:
        return "$?"


def digest_headline(data: Mapping[str, Any]) -> str:
    """`Weekly digest for alice: $12.34 spent, $5.67 avoided by Warden`."""
    every = {"day": "Daily", "week": "Weekly", "month": "Monthly"}.get(
        str(data.get("period")), "Periodic"
    )
    return (
        f"{every} digest for {data.get('owner', '?')}: {_usd(data.get('spent'))} spent, "
        f"{_usd(data.get('avoided'))} avoided by Warden"
    )


def digest_lines(event: CloudEvent) -> list[str]:
    """An owner digest, readably: the period, what ran and cost, what Warden stopped and
    what that avoided, and what is due."""
    data = _data(event)
    start, end = _time(data.get("period_start")), _time(data.get("period_end"))
    span = (
        f"{start:%a %d %b} to {(end - timedelta(seconds=1)):%a %d %b %Y} (UTC)"
        if start and end
        else ""
    )
    lines = [f":bar_chart: *{_mrkdwn(digest_headline(data))}*", _mrkdwn(span)]
    ran = [r for r in data.get("ran") or [] if isinstance(r, Mapping)]
    lines.append("*What ran*" if ran else "*What ran*: nothing was charged")
    lines += [f"• {_mrkdwn(str(r.get('name')))} — {_usd(r.get('spent'))}" for r in ran]
    if (more := int(data.get("ran_count") or 0) - len(ran)) > 0:
        lines.append(f"…and {more} more")
    stopped = [s for s in data.get("stopped") or [] if isinstance(s, Mapping)]
    if stopped:
        lines.append(f"*Warden stopped* ({data.get('stops', 0)} stops)")
        lines += [
            f"• {_mrkdwn(str(s.get('name')))} — stopped {s.get('hours')} h, "
            f"{_usd(s.get('avoided'))} avoided"
            for s in stopped
        ]
    due = [d for d in data.get("due") or [] if isinstance(d, Mapping)]
    lines.append("*Due*" if due else "*Due*: nothing")
    for d in due:
        when = _time(d.get("due_at"))
        stamp = f"{when:%a %H:%M} UTC" if when else "?"
        what = "keep-alive ends" if d.get("action") == "keep_alive_ends" else d.get("action")
        policy = f" (policy `{_mrkdwn(str(d['policy']))}`)" if d.get("policy") else ""
        lines.append(f"• {_mrkdwn(str(d.get('name')))}: {_mrkdwn(str(what))} at {stamp}{policy}")
    for b in data.get("budgets") or []:
        if isinstance(b, Mapping):
            lines.append(
                f"Budget `{_mrkdwn(str(b.get('budget')))}`: {_usd(b.get('spent'))} of "
                f"{_usd(b.get('limit'))} ({_mrkdwn(str(b.get('percent')))})"
            )
    return lines


def slack_lines(event: CloudEvent, *, now: datetime) -> list[str]:
    """One event, in full: what, why, when, how to snooze, where to read more."""
    if event.get("type") == ev.OWNER_DIGEST:
        return digest_lines(event)
    data = _data(event)
    severity = str(event.get("severity", "info"))
    lines = [f"{_EMOJI.get(severity, ':rotating_light:')} *{_mrkdwn(headline(event))}*"]
    if policy := _text(data, "policy"):
        lines.append(f"Policy: `{_mrkdwn(policy)}`")
    if why := _why(data):
        lines.append(f"Why: {_mrkdwn(why)}")
    if when := _when(data, now):
        until = (ev.WORKSPACE_SNOOZED, ev.WORKSPACE_KEPT_ALIVE)
        label = "Until" if event.get("type") in until else "When"
        lines.append(f"{label}: {when}")
    if snooze := _link(data, "snooze"):
        lines.append(f"To postpone it: {_slack_link(snooze, _snooze_label(data))}")
    if explain := _link(data, "explain"):
        lines.append(_slack_link(explain, "Why did Warden decide this?"))
    return lines


def _slack_item(event: CloudEvent, *, now: datetime) -> str:
    """One event of a group, in one line."""
    data = _data(event)
    parts = [f"• {_mrkdwn(_subject(event))}"]
    if when := _when(data, now):
        parts.append(when)
    if (why := _why(data)) and event.get("type") != ev.WORKSPACE_WARNED:
        parts.append(_mrkdwn(excerpt(why, 120)))
    if snooze := _link(data, "snooze"):
        parts.append(_slack_link(snooze, _snooze_label(data)))
    if explain := _link(data, "explain"):
        parts.append(_slack_link(explain, "why"))
    return " — ".join(parts)


# The same for a group: {0} is the count, {1} the action, {2} the sink.
_SAY_MANY: Final[Mapping[str, str]] = {
    ev.WORKSPACE_WARNED: "{0} workspaces will be {1}",
    ev.WORKSPACE_WARNING_CLEARED: "{0} warnings no longer apply",
    ev.WORKSPACE_STOPPED: "Stopped {0} workspaces",
    ev.WORKSPACE_RESUMED: "Resumed {0} workspaces",
    ev.WORKSPACE_EXTENDED: "Extended {0} workspaces",
    ev.WORKSPACE_NOTIFIED: "{0} workspaces crossed a limit",
    ev.WORKSPACE_SKIPPED: "Left {0} workspaces alone",
    ev.WORKSPACE_SNOOZED: "{0} workspaces were snoozed",
    ev.ACTION_PLANNED: "Dry run: would have {1} {0} workspaces",
    ev.ACTION_FAILED: "Could not {1} {0} workspaces",
    ev.ACTION_HELD: "Held back: {1} {0} workspaces",
    ev.PROVIDER_UNREACHABLE: "{0} providers are unreachable",
    ev.PROVIDER_RECOVERED: "{0} providers are reachable again",
    ev.PROVIDER_ANSWER_REJECTED: "{0} answers of providers were rejected",
    ev.SINK_DISABLED: "{0} sinks were disabled",
    ev.EVENT_DEAD_LETTERED: "{0} events could not be delivered to sink {2}",
}


def _group_headline(events: Sequence[CloudEvent]) -> str:
    """What a group is, in one plain line: `Stopped 30 workspaces (policy idle-dev)`."""
    first = events[0]
    data = _data(first)
    template = _SAY_MANY.get(str(first.get("type")), "{0} events of type {3}")
    what = template.format(
        len(events), _action(first), _text(data, "sink") or "", first.get("type")
    )
    policy = _text(data, "policy")
    return f"{what} (policy {policy})" if policy else what


def slack_message(events: Sequence[CloudEvent], *, now: datetime) -> dict[str, Any]:
    """An incoming-webhook payload: `text` for notifications, blocks for reading."""
    if not events:
        raise ValueError("a Slack message needs at least one event")
    if len(events) == 1:
        lines = slack_lines(events[0], now=now)
        title = headline(events[0])
    else:
        title = _group_headline(events)
        severity = str(events[0].get("severity", "info"))
        lines = [f"{_EMOJI.get(severity, ':rotating_light:')} *{_mrkdwn(title)}*"]
        lines += [_slack_item(e, now=now) for e in events[:GROUP_LINES]]
        if len(events) > GROUP_LINES:
            lines.append(f"…and {len(events) - GROUP_LINES} more")
    body = "\n".join(lines)
    if len(body) > SLACK_TEXT_LIMIT:
        body = body[:SLACK_TEXT_LIMIT] + "…"
    ids = ", ".join(str(e.get("id")) for e in events[:3])
    return {
        "text": title,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": _mrkdwn(f"Warden · {events[0].get('type')} · {ids}")}
                ],
            },
        ],
    }


# ---------------------------------------------------------------- PagerDuty

PD_SEVERITY: Final[Mapping[str, str]] = {
    "info": "info",
    "warning": "warning",
    "critical": "critical",
}


def _slug(event_type: str) -> str:
    """`warden.provider.unreachable` → `provider-unreachable`."""
    return event_type.removeprefix("warden.").replace(".", "-").replace("_", "-")


def dedup_key(event_type: str, subject: str) -> str:
    """The incident an event of this type about this subject opens or updates."""
    return f"warden/{_slug(event_type)}/{subject}"


def incident_of(event: CloudEvent) -> tuple[str, str]:
    """(`trigger` or `resolve`, dedup_key) for one event."""
    event_type, subject = str(event["type"]), str(event["subject"])
    ended = RESOLVES.get(event_type)
    if ended is not None:
        return "resolve", dedup_key(ended, subject)
    return "trigger", dedup_key(event_type, subject)


def group_dedup_key(events: Sequence[CloudEvent]) -> str:
    """One incident per (type, policy) storm: further storms join it while it is open."""
    first = events[0]
    policy = _text(_data(first), "policy")
    scope = f"policy/{policy}" if policy else "all"
    return f"warden/{_slug(str(first['type']))}/{scope}"


def pagerduty_event(routing_key: str, events: Sequence[CloudEvent]) -> dict[str, Any]:
    """An Events API v2 body for one event or one group of them."""
    if not events:
        raise ValueError("a PagerDuty event needs at least one event")
    if len(events) == 1:
        action, key = incident_of(events[0])
        summary, details = headline(events[0]), dict(_data(events[0]))
    else:
        action, key = "trigger", group_dedup_key(events)
        summary = _group_headline(events)
        details = {
            "count": len(events),
            "subjects": [_subject(e) for e in events],
            "events": [e["id"] for e in events],
        }
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": key}
    if action == "resolve":
        return body
    first = events[0]
    data = _data(first)
    if why := _why(data):
        summary = f"{summary}: {why}"
    payload: dict[str, Any] = {
        "summary": excerpt(summary, PD_SUMMARY_LIMIT - 1),
        "source": _subject(first) if len(events) == 1 else str(first.get("source", "warden")),
        "severity": PD_SEVERITY.get(str(first.get("severity")), "warning"),
        "timestamp": first["time"],
        "class": first["type"],
        "custom_details": details,
    }
    if provider := _text(data, "provider"):
        payload["component"] = provider
    if policy := _text(data, "policy"):
        payload["group"] = policy
    body["payload"] = payload
    body["client"] = "Warden"
    if len(events) == 1 and (explain := _link(data, "explain")):
        body["links"] = [{"href": explain, "text": "Why did Warden decide this?"}]
    return body
