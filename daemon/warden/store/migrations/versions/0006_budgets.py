"""Budgets: the ledger by local day per time zone, and each budget window's state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

`spend_ledger` (UTC days) becomes `spend_days`, keyed by zone as well; its rows are
copied with zone "UTC". Self-contained on purpose, like 0001: it imports nothing
from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 6)


def upgrade() -> None:
    op.create_table(
        "spend_days",
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("estimated", MONEY, nullable=False),
        sa.Column("incomplete", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("zone", "provider", "native_id", "day", name=op.f("pk_spend_days")),
    )
    op.create_index(op.f("ix_spend_days_zone_day"), "spend_days", ["zone", "day"], unique=False)
    op.execute(
        "INSERT INTO spend_days (zone, provider, native_id, day, owner, currency, amount,"
        " estimated, incomplete) SELECT 'UTC', provider, native_id, day, owner, currency,"
        " amount, estimated, incomplete FROM spend_ledger"
    )
    op.drop_index(op.f("ix_spend_ledger_day"), table_name="spend_ledger")
    op.drop_table("spend_ledger")
    op.create_table(
        "budget_windows",
        sa.Column("budget", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired", sa.JSON(), nullable=False),
        sa.Column("acted", sa.JSON(), nullable=False),
        sa.Column("undone", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("budget", "scope", "window_start", name=op.f("pk_budget_windows")),
    )
    op.create_index(
        op.f("ix_budget_windows_undone_window_end"),
        "budget_windows",
        ["undone", "window_end"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_budget_windows_undone_window_end"), table_name="budget_windows")
    op.drop_table("budget_windows")
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
    op.execute(
        "INSERT INTO spend_ledger (provider, native_id, day, owner, currency, amount,"
        " estimated, incomplete) SELECT provider, native_id, day, owner, currency, amount,"
        " estimated, incomplete FROM spend_days WHERE zone = 'UTC'"
    )
    op.drop_index(op.f("ix_spend_days_zone_day"), table_name="spend_days")
    op.drop_table("spend_days")
