"""Utilisation samples kept across polls, for gpu_below / cpu_below policies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Self-contained on purpose, like 0001: it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "utilisation_samples",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric(7, 3), nullable=True),
        sa.PrimaryKeyConstraint(
            "provider", "native_id", "metric", "at", name=op.f("pk_utilisation_samples")
        ),
    )
    op.create_index(op.f("ix_utilisation_samples_at"), "utilisation_samples", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_utilisation_samples_at"), table_name="utilisation_samples")
    op.drop_table("utilisation_samples")
