"""Delivery of the event outbox: per-sink cursors and state, deliveries, snooze tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Self-contained on purpose, like 0001: it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sink_states",
        sa.Column("sink", sa.String(), nullable=False),
        sa.Column("last_seq", SERIAL, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_at", TIMESTAMP),
        sa.Column("reason", sa.Text()),
        sa.PrimaryKeyConstraint("sink", name="pk_sink_states"),
    )
    op.create_table(
        "deliveries",
        sa.Column("sink", sa.String(), nullable=False),
        sa.Column("seq", SERIAL, nullable=False, autoincrement=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("batch", sa.String()),
        sa.Column("last_attempt_at", TIMESTAMP),
        sa.Column("last_error", sa.Text()),
        sa.Column("delivered_at", TIMESTAMP),
        sa.Column("dead_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("sink", "seq", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["seq"], ["events.seq"], name="fk_deliveries_seq_events", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_deliveries_sink_status_subject_seq",
        "deliveries",
        ["sink", "status", "subject", "seq"],
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.create_index("ix_deliveries_event_id", "deliveries", ["event_id"])
    op.create_table(
        "snooze_tokens",
        sa.Column("nonce", sa.String(), nullable=False),
        sa.Column("used_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_snooze_tokens"),
    )
    op.create_index("ix_snooze_tokens_expires_at", "snooze_tokens", ["expires_at"])


def downgrade() -> None:
    for table in ("snooze_tokens", "deliveries", "sink_states"):
        op.drop_table(table)
