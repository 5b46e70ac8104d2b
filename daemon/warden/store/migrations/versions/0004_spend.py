"""Spend: each workspace's accrual point and its ledger by UTC day.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Self-contained on purpose, like 0001: it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 6)


def upgrade() -> None:
    op.create_table(
        "spend_points",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("per_hour", MONEY, nullable=True),
        sa.PrimaryKeyConstraint("provider", "native_id", name=op.f("pk_spend_points")),
    )
    op.create_table(
        "spend_ledger",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("estimated", MONEY, nullable=False),
        sa.Column("incomplete", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "native_id", "day", name=op.f("pk_spend_ledger")),
    )
    op.create_index(op.f("ix_spend_ledger_day"), "spend_ledger", ["day"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_spend_ledger_day"), table_name="spend_ledger")
    op.drop_table("spend_ledger")
    op.drop_table("spend_points")
