"""Trust under faults: fencing epochs, recoverable actions, backoff, rail holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

- `leases.epoch`: the fencing token, one more whenever the holder changes.
- `actions.details`: what crash recovery needs to finish or repeat a pending action.
- `warnings.event_id`: the warning's event, whose delivery its action waits for.
- `cycles.last_complete_at`, `cycles.running`, `cycles.unreachable_since`.
- `action_retries`, `rail_holds`, `answer_rejections`: episodes told once.

Self-contained on purpose, like 0001: it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("details", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("warnings") as batch:
        batch.add_column(sa.Column("event_id", sa.String(), nullable=True))
    with op.batch_alter_table("cycles") as batch:
        batch.add_column(sa.Column("last_complete_at", TIME, nullable=True))
        batch.add_column(sa.Column("running", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("unreachable_since", TIME, nullable=True))
    op.create_table(
        "action_retries",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("verb", sa.String(24), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", TIME, nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint(
            "provider", "native_id", "policy", "verb", name=op.f("pk_action_retries")
        ),
    )
    op.create_table(
        "rail_holds",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("since", TIME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("wanted", sa.Integer(), nullable=False),
        sa.Column("allowed", sa.Integer(), nullable=False),
        sa.Column("released_at", TIME, nullable=True),
        sa.Column("released_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("provider", "policy", name=op.f("pk_rail_holds")),
    )
    op.create_table(
        "answer_rejections",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("since", TIME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "subject", name=op.f("pk_answer_rejections")),
    )


def downgrade() -> None:
    op.drop_table("answer_rejections")
    op.drop_table("rail_holds")
    op.drop_table("action_retries")
    with op.batch_alter_table("cycles") as batch:
        batch.drop_column("unreachable_since")
        batch.drop_column("running")
        batch.drop_column("last_complete_at")
    with op.batch_alter_table("warnings") as batch:
        batch.drop_column("event_id")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("details")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("epoch")
