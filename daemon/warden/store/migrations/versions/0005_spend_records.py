"""Spend records: spend Warden cannot observe, pushed to the API or read from feeds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Self-contained on purpose, like 0001: it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 6)


def upgrade() -> None:
    op.create_table(
        "spend_records",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "record_id", name=op.f("pk_spend_records")),
    )
    op.create_index(op.f("ix_spend_records_at"), "spend_records", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_spend_records_at"), table_name="spend_records")
    op.drop_table("spend_records")
