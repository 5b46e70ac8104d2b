"""The state store's schema: one MetaData for SQLite and PostgreSQL alike.

This module owns the table definitions and the column types they need; it must not
open connections or run statements. The migrations in `migrations/versions/` create
exactly these tables (a test compares them); a change here needs a new revision.

Every timestamp column is `UTCDateTime`: aware UTC in, aware UTC out, on both backends.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.types import TypeDecorator

# Named constraints keep future migrations (and SQLite's batch mode) able to find them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SerialId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, always read back as aware UTC.

    SQLite keeps no offset, so every value is converted to UTC before it is written
    (otherwise a non-UTC wall time would be stored as if it were UTC) and given the
    UTC zone back when read. Naive datetimes are refused: their meaning is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return _in_utc(value)


# Many rows hold the same instant (every workspace first seen by the same poll, every
# warning given by the same cycle): one datetime object for each, not one per row, is
# tens of MB less when a cycle reads 100k workspaces' memory.
@functools.lru_cache(maxsize=4096)
def _in_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _workspace_key() -> list[Column[Any]]:
    return [
        Column("provider", String, primary_key=True),
        Column("native_id", String, primary_key=True),
    ]


workspaces = Table(
    "workspaces",
    metadata,
    *_workspace_key(),
    Column("name", String),  # None until a poll has seen it
    Column("owner", String),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("running_since", UTCDateTime),  # first poll that saw this running period
    Column("started_at", UTCDateTime),  # the platform's own start of the period, if said
    Column("last_state", String(16)),
    Column("last_seen_at", UTCDateTime),
    Column("snoozed_until", UTCDateTime),
    Column("stopped_by", String),  # the policy that made Warden stop it; None otherwise
    Column("stopped_at", UTCDateTime),
    Column("last_snapshot", JSON(none_as_null=True)),  # for explain
    # (0008) A keep-alive: in use until `kept_alive_until`, set at `kept_alive_at` (each
    # idle or utilisation policy holds its stop at most its `keep_alive.max` from then).
    Column("kept_alive_at", UTCDateTime),
    Column("kept_alive_until", UTCDateTime),
    Column("kept_alive_by", String),
    # (0009) A hash of the last snapshot's facts (not its `observed_at`): a poll writes
    # the row only when they changed. `listed`: the provider's last listing showed it,
    # so it was last seen then (`cycles.last_success_at`), with no write to say so.
    Column("digest", String),
    Column("listed", Boolean, nullable=False, server_default=false()),
    Index(None, "last_state"),
)

warnings = Table(
    "warnings",
    metadata,
    *_workspace_key(),
    Column("policy", String, primary_key=True),
    Column("verb", String(16), nullable=False),
    Column("warned_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("snoozes_used", Integer, nullable=False, server_default="0"),
    # (0007) The warning's event: its action waits until that event has been delivered.
    Column("event_id", String),
    Index(None, "due_at"),
)

extensions = Table(
    "extensions",
    metadata,
    *_workspace_key(),
    Column("policy", String, primary_key=True),
    Column("used", Integer, nullable=False, server_default="0"),
    Column("period_started_at", UTCDateTime),  # the running_since the count belongs to
)

actions = Table(
    "actions",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("idempotency_key", String, nullable=False, unique=True),
    Column("provider", String, nullable=False),
    Column("native_id", String, nullable=False),
    Column("policy", String, nullable=False),
    Column("verb", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("outcome", String(16), nullable=False),  # see rows.Outcome
    Column("error", Text),
    Column("dry_run", Boolean, nullable=False),
    # (0007) What recovery needs to finish or repeat it after a crash: the decision's
    # facts, the deadline of an extension. Written with the pending row.
    Column("details", JSON(none_as_null=True)),
    # (0008) A stop's worth, for savings (`spend/savings.py`): the workspace's rate when
    # Warden stopped it (its spend point's), and when it next ran.
    Column("per_hour", Numeric(18, 6)),
    Column("ran_again_at", UTCDateTime),
    Index(None, "outcome"),
    Index(None, "provider", "native_id", "id"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("time", UTCDateTime, nullable=False),
    Column("provider", String, nullable=False),
    Column("native_id", String, nullable=False),
    Column("policy", String, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("verb", String(16)),
    Column("reason", Text, nullable=False),
    Column("due_at", UTCDateTime),
    Column("dry_run", Boolean, nullable=False),
    Column("facts", JSON, nullable=False),
    Index(None, "provider", "native_id", "time"),
    Index(None, "time"),  # for pruning old decisions
)

# (0009) The last decision recorded per workspace and policy, as a digest: the same
# decision made again (a dry run's "would stop", cycle after cycle) is not recorded again.
decision_heads = Table(
    "decision_heads",
    metadata,
    *_workspace_key(),
    Column("policy", String, primary_key=True),
    Column("digest", String, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("time", UTCDateTime, nullable=False),
)

# The outbox. `seq` is the delivery order; a later `deliveries` table references it.
# AUTOINCREMENT on SQLite: a seq is never reused, even after old events are pruned.
events = Table(
    "events",
    metadata,
    Column("seq", SerialId, primary_key=True, autoincrement=True),
    Column("id", String, nullable=False, unique=True),
    Column("type", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    # The database's clock, for operators measuring outbox lag; never used to decide.
    Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    sqlite_autoincrement=True,
)

cycles = Table(
    "cycles",
    metadata,
    Column("provider", String, primary_key=True),
    Column("last_cycle_at", UTCDateTime),  # the last attempt, successful or not
    Column("last_success_at", UTCDateTime),  # the `since` of the next cycle
    # (0007) The last listing that read every page, and how many of its workspaces ran:
    # the blast radius is a share of that, not of a listing cut short.
    Column("last_complete_at", UTCDateTime),
    Column("running", Integer),
    Column("unreachable_since", UTCDateTime),  # told once per outage
)

leases = Table(
    "leases",
    metadata,
    Column("name", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    # (0007) The fencing token: one more whenever the holder changes, never reused.
    Column("epoch", BigInteger, nullable=False, server_default="0"),
)

# ---------------------------------------------------------------- delivery (0002)
# Owned by `store/deliveries.py` for `events/dispatcher.py`.

# One row per configured sink: how far routing has read the outbox (`last_seq`), and
# whether a receiver's 410 Gone has switched the sink off.
sink_states = Table(
    "sink_states",
    metadata,
    Column("sink", String, primary_key=True),
    Column("last_seq", SerialId, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("disabled_at", UTCDateTime),
    Column("reason", Text),
)

# One row per (sink, event) that routing sent to the sink, until it is delivered or
# dead-lettered. `subject` is copied from the event: delivery keeps order per subject.
# `batch` is set on the first attempt of a grouped message so that retries resend the
# same group (and PagerDuty sees the same dedup_key).
deliveries = Table(
    "deliveries",
    metadata,
    Column("sink", String, primary_key=True),
    Column(
        "seq",
        SerialId,
        ForeignKey("events.seq", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("event_id", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("batch", String),
    Column("last_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("delivered_at", UTCDateTime),
    Column("dead_at", UTCDateTime),
    Index(None, "sink", "status", "subject", "seq"),
    Index(None, "status"),
    Index(None, "event_id"),
)

# Snooze links work once: a link's nonce is written here when it is used.
snooze_tokens = Table(
    "snooze_tokens",
    metadata,
    Column("nonce", String, primary_key=True),
    Column("used_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),  # after this the row can be pruned
    Index(None, "expires_at"),
)

# ---------------------------------------------------------------- utilisation (0003)
# Owned by `store/samples.py`: one row per poll, workspace and metric; a NULL value is
# a poll where the platform did not say.
utilisation_samples = Table(
    "utilisation_samples",
    metadata,
    Column("provider", String, primary_key=True),
    Column("native_id", String, primary_key=True),
    Column("metric", String(16), primary_key=True),
    Column("at", UTCDateTime, primary_key=True),
    Column("value", Numeric(7, 3)),
    Index(None, "at"),
)

# ---------------------------------------------------------------- spend (0004)
# Where accrual stands per workspace (moved forward with each observation), and
# the money accrued per workspace and UTC day; `estimated` is the part charged across
# a gap in observation, `incomplete` says a running period had no price.
spend_points = Table(
    "spend_points",
    metadata,
    Column("provider", String, primary_key=True),
    Column("native_id", String, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("running", Boolean, nullable=False),
    Column("per_hour", Numeric(18, 6)),
)

# (0006) Days are local to `zone`: UTC for reports, and each budget's time zone.
spend_ledger = Table(
    "spend_days",
    metadata,
    Column("zone", String(64), primary_key=True),
    Column("provider", String, primary_key=True),
    Column("native_id", String, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("owner", String, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Numeric(18, 6), nullable=False),
    Column("estimated", Numeric(18, 6), nullable=False),
    Column("incomplete", Boolean, nullable=False),
    Index(None, "zone", "day"),
)

# ---------------------------------------------------------------- spend records (0005)
# Spend Warden cannot observe, pushed to POST /v1/spend or read from a spend feed
# (`spend/feeds.py`). The record's own id is the key within its provider: a record
# sent twice is kept once. `native_id` is None for spend of the provider as a whole;
# `source` is "push" or the feed's name.
spend_records = Table(
    "spend_records",
    metadata,
    Column("provider", String, primary_key=True),
    Column("record_id", String, primary_key=True),
    Column("native_id", String),
    Column("owner", String),
    Column("amount", Numeric(18, 6), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("source", String, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index(None, "at"),
)

# ---------------------------------------------------------------- budgets (0006)
# One row per budget, scope value and window: which thresholds have fired (each fires
# once per window), what Warden did for it (to undo at the reset, and nothing else),
# and whether that undo is complete.
budget_windows = Table(
    "budget_windows",
    metadata,
    Column("budget", String, primary_key=True),
    Column("scope", String, primary_key=True),
    Column("window_start", UTCDateTime, primary_key=True),
    Column("window_end", UTCDateTime, nullable=False),
    Column("fired", JSON, nullable=False),  # threshold indices, in firing order
    Column("acted", JSON, nullable=False),  # [{workspace, verb, replaced?}] to undo
    Column("undone", Boolean, nullable=False),
    Index(None, "undone", "window_end"),
)

# ---------------------------------------------------------------- trust (0007)
# Owned by `store/journal.py`. A failing action backs off per workspace, policy and
# verb: `failures` in this episode, when it may be tried next, told once (at the first).
action_retries = Table(
    "action_retries",
    metadata,
    *_workspace_key(),
    Column("policy", String, primary_key=True),
    Column("verb", String(24), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("first_failed_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
)

# A safety rail holding a policy's actions on a provider: told once when it begins,
# kept until the policy no longer asks for more than its share, or an admin releases it.
rail_holds = Table(
    "rail_holds",
    metadata,
    Column("provider", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("wanted", Integer, nullable=False),
    Column("allowed", Integer, nullable=False),
    Column("released_at", UTCDateTime),
    Column("released_by", String),
)

# A platform answer Warden refused (a workspace, or a page of the listing), told once
# while it lasts: `subject` is the workspace's native id or "page @OFFSET".
answer_rejections = Table(
    "answer_rejections",
    metadata,
    Column("provider", String, primary_key=True),
    Column("subject", String, primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)

# ---------------------------------------------------------------- owners (0008)
# An owner digest of one period is told once: its row is written with its events.
digests_sent = Table(
    "digests_sent",
    metadata,
    Column("digest", String, primary_key=True),
    Column("period_start", UTCDateTime, primary_key=True),
    Column("period_end", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("owners", Integer, nullable=False),
)

# How fresh the spend Warden cannot observe is: per feed (or "push") and provider, the
# last good read and the moment its records are complete up to (`as_of`); a lag beyond
# the feed's `max_lag` is an episode, told once from `lagging_since`.
spend_sources = Table(
    "spend_sources",
    metadata,
    Column("source", String, primary_key=True),
    Column("provider", String, primary_key=True),
    Column("read_at", UTCDateTime, nullable=False),
    Column("as_of", UTCDateTime, nullable=False),
    Column("lagging_since", UTCDateTime),
)
