"""What owners see and steer: savings evidence, keep-alives, digests, feed freshness.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10

- `actions.per_hour`, `actions.ran_again_at`: a stop's rate when Warden made it and
  when the workspace next ran, so that what the stop avoided can be counted later.
- `workspaces.kept_alive_at`, `kept_alive_until`, `kept_alive_by`: a keep-alive.
- `digests_sent`: which owner digests of which period have been told.
- `spend_sources`: how fresh each spend feed's (or push's) data is, and its lag episode.

Self-contained on purpose, like 0001: it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("per_hour", sa.Numeric(18, 6), nullable=True))
        batch.add_column(sa.Column("ran_again_at", TIME, nullable=True))
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("kept_alive_at", TIME, nullable=True))
        batch.add_column(sa.Column("kept_alive_until", TIME, nullable=True))
        batch.add_column(sa.Column("kept_alive_by", sa.String(), nullable=True))
    op.create_table(
        "digests_sent",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("period_start", TIME, nullable=False),
        sa.Column("period_end", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=False),
        sa.Column("owners", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("digest", "period_start", name=op.f("pk_digests_sent")),
    )
    op.create_table(
        "spend_sources",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("read_at", TIME, nullable=False),
        sa.Column("as_of", TIME, nullable=False),
        sa.Column("lagging_since", TIME, nullable=True),
        sa.PrimaryKeyConstraint("source", "provider", name=op.f("pk_spend_sources")),
    )


def downgrade() -> None:
    op.drop_table("spend_sources")
    op.drop_table("digests_sent")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("kept_alive_by")
        batch.drop_column("kept_alive_until")
        batch.drop_column("kept_alive_at")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("ran_again_at")
        batch.drop_column("per_hour")
