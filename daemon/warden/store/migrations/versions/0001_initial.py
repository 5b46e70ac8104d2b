"""The initial schema: workspaces, warnings, extensions, actions, decisions, the event
outbox, provider cycles and leader leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Self-contained on purpose: a revision must keep creating the same tables when
`tables.py` has moved on, so it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _workspace_key() -> list[sa.Column[str]]:
    return [
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
    ]


def upgrade() -> None:
    _create_workspace_tables()
    _create_history_tables()
    _create_coordination_tables()


def _create_workspace_tables() -> None:
    op.create_table(
        "workspaces",
        *_workspace_key(),
        sa.Column("name", sa.String()),
        sa.Column("owner", sa.String()),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.Column("running_since", TIMESTAMP),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("last_state", sa.String(16)),
        sa.Column("last_seen_at", TIMESTAMP),
        sa.Column("snoozed_until", TIMESTAMP),
        sa.Column("stopped_by", sa.String()),
        sa.Column("stopped_at", TIMESTAMP),
        sa.Column("last_snapshot", sa.JSON()),
        sa.PrimaryKeyConstraint("provider", "native_id", name="pk_workspaces"),
    )
    op.create_index("ix_workspaces_last_state", "workspaces", ["last_state"])
    op.create_table(
        "warnings",
        *_workspace_key(),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("verb", sa.String(16), nullable=False),
        sa.Column("warned_at", TIMESTAMP, nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("snoozes_used", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("provider", "native_id", "policy", name="pk_warnings"),
    )
    op.create_index("ix_warnings_due_at", "warnings", ["due_at"])
    op.create_table(
        "extensions",
        *_workspace_key(),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("period_started_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("provider", "native_id", "policy", name="pk_extensions"),
    )


def _create_history_tables() -> None:
    op.create_table(
        "actions",
        sa.Column("id", SERIAL, nullable=False, autoincrement=True),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("verb", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_actions"),
        sa.UniqueConstraint("idempotency_key", name="uq_actions_idempotency_key"),
    )
    op.create_index("ix_actions_outcome", "actions", ["outcome"])
    op.create_index("ix_actions_provider_native_id_id", "actions", ["provider", "native_id", "id"])
    op.create_table(
        "decisions",
        sa.Column("id", SERIAL, nullable=False, autoincrement=True),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("verb", sa.String(16)),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("due_at", TIMESTAMP),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
    )
    op.create_index(
        "ix_decisions_provider_native_id_time", "decisions", ["provider", "native_id", "time"]
    )
    op.create_index("ix_decisions_time", "decisions", ["time"])
    op.create_table(
        "events",
        sa.Column("seq", SERIAL, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column(
            "created_at", TIMESTAMP, nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
        sqlite_autoincrement=True,  # a seq is never reused, even after pruning
    )


def _create_coordination_tables() -> None:
    op.create_table(
        "cycles",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("last_cycle_at", TIMESTAMP),
        sa.Column("last_success_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("provider", name="pk_cycles"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    for table in (
        "leases",
        "cycles",
        "events",
        "decisions",
        "actions",
        "extensions",
        "warnings",
        "workspaces",
    ):
        op.drop_table(table)
