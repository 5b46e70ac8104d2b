"""Spend Warden cannot observe: records pushed to the admin API or pulled from feeds.

The agent-run platform shows its budgets, not what its runs cost; that spend reaches
Warden as records `{"records": [{"id", "provider", "workspace", "owner", "amount",
"currency", "at"}]}`, either posted to `POST /v1/spend` (server.py) or read from the
URL of a `spend_feeds:` entry by a `FeedPoller`. One parser, `parse_records`, serves
both: a batch is valid as a whole or refused as a whole, with every problem named by
record index and field.

A record's `id` is its idempotency key within its provider: the store keeps the first
copy and counts the others as duplicates, across requests, polls and restarts.

Money is never a float: JSON numbers are read as Decimal, and amounts keep six
decimal places (a millionth of a dollar, what the store holds), rounded half-even.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import aiohttp
import structlog
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictStr,
    ValidationError,
    field_validator,
)

from warden.errors import WardenError, excerpt
from warden.events import catalogue as ev
from warden.json_input import JsonInputError, load_json
from warden.model import Event
from warden.openapi import (
    AMOUNT_LIMIT,
    AMOUNT_PATTERN,
    RECORD_ID_PATTERN,
    RECORD_TEXT_PATTERN,
)
from warden.policy.durations import format_duration
from warden.policy.models import NAME_PATTERN, SpendFeed

if TYPE_CHECKING:
    from warden.store import Store

log = structlog.get_logger(__name__)

MICRO: Final = Decimal("0.000001")  # the store's precision: Numeric(18, 6)
MAX_FEED_RECORDS: Final = 100_000  # in one answer of a feed
MAX_FEED_BYTES: Final = 16 * 1024 * 1024
MAX_PROBLEMS: Final = 5  # named in one message; the rest are counted
_CHUNK: Final = 64 * 1024
_DECIMAL_TEXT: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# What the OpenAPI document's `format: date-time` means (RFC 3339), zone included:
# looser parsers would read "1732528800" or a time without a zone.
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


class SpendRecordError(WardenError):
    """A batch of spend records was refused as a whole; the message names each problem."""


# ---------------------------------------------------------------- the record


def _matching(pattern: str, rule: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise ValueError(rule)
        return value

    return AfterValidator(check)


def parse_amount(value: Any) -> Decimal:
    """A decimal string ("1.25") or a JSON number read as Decimal; never a float."""
    if isinstance(value, str):
        if _DECIMAL_TEXT.fullmatch(value) is None:
            raise ValueError('expected a decimal string such as "1.25"')
        if value.startswith("-"):
            raise ValueError("expected an amount of 0 or more")
        if re.fullmatch(AMOUNT_PATTERN, value) is None:  # what the OpenAPI document says
            raise ValueError(f"expected an amount under {AMOUNT_LIMIT} USD")
        value = Decimal(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, Decimal):  # a float, a bool, null, a list...
        raise ValueError('expected a decimal string such as "1.25" or a JSON number')
    if not value.is_finite():
        raise ValueError("expected a finite amount")
    if value < 0:
        raise ValueError("expected an amount of 0 or more")
    if value >= AMOUNT_LIMIT:
        raise ValueError(f"expected an amount under {AMOUNT_LIMIT} USD")
    value = value if value else Decimal(0)  # -0.0 is 0
    return value.quantize(MICRO, rounding=ROUND_HALF_EVEN)


def _time_text(value: Any) -> Any:
    if isinstance(value, datetime):  # from Python (the store), not from JSON
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError("expected an RFC 3339 time with its zone, such as 2026-11-25T10:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first UTC day
        raise ValueError("expected a time between the years 1 and 9999 in UTC") from None


RecordId = Annotated[
    StrictStr,
    _matching(RECORD_ID_PATTERN, "expected 1 to 200 printable ASCII characters, no spaces"),
]
RecordText = Annotated[
    StrictStr, _matching(RECORD_TEXT_PATTERN, "expected 1 to 200 characters, no control characters")
]
ProviderName = Annotated[
    StrictStr, _matching(NAME_PATTERN, "expected a provider name from the policy files")
]
Amount = Annotated[Decimal, BeforeValidator(parse_amount)]
RecordTime = Annotated[AwareDatetime, BeforeValidator(_time_text), AfterValidator(_in_utc)]


class SpendRecord(BaseModel):
    """One charge Warden did not observe: an agent run, say. Immutable.

    `workspace` is the platform's own id of the workspace it belongs to (None: the
    provider as a whole), `owner` who caused it, `at` when it was incurred (in UTC).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: RecordId
    provider: ProviderName
    workspace: RecordText | None = None
    owner: RecordText | None = None
    amount: Amount
    currency: Literal["USD"]
    at: RecordTime


class _Batch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    records: list[SpendRecord]
    as_of: RecordTime | None = None  # the records are complete up to here (a bill's lag)

    @field_validator("as_of", mode="before")
    @classmethod
    def _given_means_a_time(cls, value: Any) -> Any:
        if value is None:  # left out is fine; null says nothing and is refused
            raise ValueError("expected an RFC 3339 time with its zone, or no as_of at all")
        return value


@dataclass(frozen=True, slots=True)
class Batch:
    """A valid batch: its records, and up to when they are complete if it says."""

    records: list[SpendRecord]
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceState:
    """How fresh one source of fed spend is: a feed (by name) or "push", per provider.

    `as_of` is the moment its records are complete up to: what the batch said
    (`"as_of"`, for a bill exported hours late), else the moment it was read.
    """

    source: str
    provider: str
    read_at: datetime
    as_of: datetime
    lagging_since: datetime | None = None  # a lag beyond the feed's max_lag, told then

    def lag(self, now: datetime) -> timedelta:
        return max(now - self.as_of, timedelta(0))

    def read(self, now: datetime, as_of: datetime | None) -> SourceState:
        """After a good read at `now` of a batch complete up to `as_of` (None: now)."""
        return replace(self, read_at=now, as_of=min(as_of or now, now))

    def judged(self, now: datetime, max_lag: timedelta) -> tuple[SourceState, bool]:
        """The episode after looking at the lag now, and whether a new one began."""
        lagging = self.lag(now) > max_lag
        if lagging and self.lagging_since is None:
            return replace(self, lagging_since=now), True
        if not lagging and self.lagging_since is not None:
            return replace(self, lagging_since=None), False
        return self, False


PUSHED = "push"  # the source of records posted to POST /v1/spend


def pushed_sources(
    batch: Batch, known: Mapping[tuple[str, str], SourceState], *, now: datetime
) -> list[SourceState]:
    """The push source of each provider a posted batch has records of, after it."""
    found = []
    for provider in sorted({r.provider for r in batch.records}):
        state = known.get((PUSHED, provider)) or SourceState(
            source=PUSHED, provider=provider, read_at=now, as_of=now
        )
        found.append(state.read(now, batch.as_of))
    return found


# ---------------------------------------------------------------- parsing


def parse_records(
    raw: bytes, *, max_records: int, provider: str | None = None
) -> list[SpendRecord]:
    """The records of a body `{"records": [...]}`; SpendRecordError naming every problem.

    `provider` (a feed's) fills in records that leave theirs out.
    """
    return parse_batch(raw, max_records=max_records, provider=provider).records


def parse_batch(raw: bytes, *, max_records: int, provider: str | None = None) -> Batch:
    """A body `{"records": [...], "as_of"?: time}`, as `parse_records` reads it."""
    data = _json(raw)
    if provider is not None:
        data = _with_provider(data, provider)
    records = data.get("records") if isinstance(data, dict) else None
    if isinstance(records, list) and len(records) > max_records:
        raise SpendRecordError(f"records: at most {max_records} in one batch")
    try:
        batch = _Batch.model_validate(data)
    except ValidationError as e:
        raise SpendRecordError(_problems(e)) from None
    return Batch(list(batch.records), batch.as_of)


def _json(raw: bytes) -> Any:
    try:
        return load_json(raw or b"null")  # the one parser of outside JSON: see json_input
    except JsonInputError:
        raise SpendRecordError('the body must be JSON: {"records": [...]}') from None


def _with_provider(data: Any, provider: str) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        return data
    records = [
        {"provider": provider} | item if isinstance(item, dict) else item
        for item in data["records"]
    ]
    return data | {"records": records}


def _problems(error: ValidationError) -> str:
    """`records[2].amount: expected ...; records[4].at: ...`, the first few of them."""
    found = []
    for item in error.errors(include_url=False):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        found.append(f"{where.removeprefix('.') or 'body'}: {message}")
    more = len(found) - MAX_PROBLEMS
    shown = "; ".join(found[:MAX_PROBLEMS])
    return shown + (f"; and {more} more" if more > 0 else "")


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole stream, or None once it is longer than `limit` bytes."""
    body = bytearray()
    async for chunk in stream.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


# ---------------------------------------------------------------- pulling


class FeedError(WardenError):
    """A feed could not be read, or its answer was not a valid batch."""


@dataclass(frozen=True, slots=True)
class FeedPoll:
    """One read of a feed: how many records were new, how many known; or why it failed."""

    new: int = 0
    duplicates: int = 0
    error: str | None = None


class FeedPoller:
    """Reads one spend feed into the store; `poll_once(now)` is one read.

    A failure never raises: it is logged, and told as `warden.spend.feed_failed` when
    the feed starts failing and whenever the reason changes (not on every poll of a
    long outage); the next good answer ends the episode.
    """

    def __init__(
        self, name: str, feed: SpendFeed, *, store: Store, http: aiohttp.ClientSession
    ) -> None:
        self.name = name
        self.feed = feed
        self._store = store
        self._http = http
        self._told: str | None = None  # the failure told last, until the feed answers

    async def poll_once(self, now: datetime) -> FeedPoll:
        with structlog.contextvars.bound_contextvars(feed=self.name):
            try:
                batch = await self._fetch()
            except FeedError as e:
                await self._failed(str(e), now)
                await self._judge_lag(None, now)
                return FeedPoll(error=str(e))
            new, duplicates = await self._store.add_spend_records(
                batch.records, source=self.name, now=now
            )
            self._told = None
            log.info("feed.polled", new=new, duplicates=duplicates)
            await self._judge_lag(batch, now)
            return FeedPoll(new, duplicates)

    async def _fetch(self) -> Batch:
        body = await self._get()
        try:
            batch = parse_batch(body, max_records=MAX_FEED_RECORDS, provider=self.feed.provider)
        except SpendRecordError as e:
            raise FeedError(f"bad answer: {e}") from None
        for index, record in enumerate(batch.records):
            if record.provider != self.feed.provider:
                raise FeedError(
                    f"bad answer: records[{index}].provider: {record.provider!r} is not this "
                    f"feed's provider {self.feed.provider!r}"
                )
        return batch

    async def _judge_lag(self, batch: Batch | None, now: datetime) -> None:
        """Record how fresh the feed's data is now; a lag beyond `max_lag` is told once
        per episode (`warden.spend.feed_lagging`). A failed read (`batch` None) moves
        nothing but time, so a feed that stops answering comes to lag too."""
        provider = self.feed.provider
        known = {(s.source, s.provider): s for s in await self._store.spend_sources()}
        state = known.get((self.name, provider))
        if batch is not None:
            fresh = SourceState(source=self.name, provider=provider, read_at=now, as_of=now)
            state = (state or fresh).read(now, batch.as_of)
        if state is None:
            return  # never read: there is no data to be late
        judged, begun = state.judged(now, self.feed.max_lag)
        events = [self._lagging(judged, now)] if begun else []
        if begun:
            log.warning("feed.lagging", lag=format_duration(judged.lag(now)))
        if judged != state or batch is not None:
            await self._store.save_spend_source(judged, events)

    def _lagging(self, state: SourceState, now: datetime) -> Event:
        return ev.new_event(
            ev.SPEND_FEED_LAGGING,
            f"feeds/{self.name}",
            now=now,
            data={
                "feed": self.name,
                "provider": state.provider,
                "as_of": state.as_of.isoformat(),
                "read_at": state.read_at.isoformat(),
                "lag_seconds": int(state.lag(now).total_seconds()),
                "lag": format_duration(state.lag(now)),
                "max_lag": format_duration(self.feed.max_lag),
                "reason": f"its data is {format_duration(state.lag(now))} old (as of "
                f"{state.as_of:%Y-%m-%d %H:%M} UTC), more than max_lag "
                f"{format_duration(self.feed.max_lag)}: budgets counting it lag as much",
            },
        )

    async def _get(self) -> bytes:
        headers = {"Accept": "application/json"}
        if self.feed.token is not None:
            headers["Authorization"] = f"Bearer {self.feed.token.get_secret_value()}"
        timeout = aiohttp.ClientTimeout(total=self.feed.timeout.total_seconds())
        try:
            # Redirects are not followed: the token would go wherever one points.
            async with self._http.get(
                str(self.feed.url), headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    raise FeedError(f"HTTP {resp.status}: {excerpt(resp.reason or '', 80)}")
                body = await read_at_most(resp.content, MAX_FEED_BYTES)
        except TimeoutError:
            raise FeedError(f"no answer within {format_duration(self.feed.timeout)}") from None
        except aiohttp.ClientError as e:
            raise FeedError(f"cannot read it: {type(e).__name__}: {excerpt(str(e))}") from None
        if body is None:
            raise FeedError(f"the answer is larger than {MAX_FEED_BYTES // 1024 // 1024} MiB")
        return body

    async def _failed(self, error: str, now: datetime) -> None:
        log.warning("feed.failed", error=error)
        if error == self._told:
            return
        self._told = error
        event = ev.new_event(
            ev.SPEND_FEED_FAILED,
            f"feeds/{self.name}",
            now=now,
            data={"feed": self.name, "provider": self.feed.provider, "error": error},
        )
        await self._store.add_events([event])


__all__ = [
    "PUSHED",
    "Batch",
    "FeedError",
    "FeedPoll",
    "FeedPoller",
    "SourceState",
    "SpendRecord",
    "SpendRecordError",
    "parse_amount",
    "parse_batch",
    "parse_records",
    "pushed_sources",
    "read_at_most",
]
