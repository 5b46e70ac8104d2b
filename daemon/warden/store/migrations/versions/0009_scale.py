"""Write only what changed: a workspace's digest and whether it is listed, and the head
of each (workspace, policy)'s decisions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

- `workspaces.digest`: a hash of the last snapshot's facts (all but `observed_at`): a
  poll rewrites the row only when it differs, or when the running period moved.
- `workspaces.listed`: the last listing of its provider showed it. A listed workspace
  was last seen at that listing (`cycles.last_success_at`), so an unchanged one needs
  no write to say so; one a listing no longer shows is written once, unlisted.
- `decision_heads`: the digest of the last decision recorded per workspace and policy:
  the same decision made again next cycle is not recorded again.

Self-contained on purpose, like 0001: it imports nothing from Warden.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("digest", sa.String(), nullable=True))
        batch.add_column(
            sa.Column("listed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "decision_heads",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("native_id", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("provider", "native_id", "policy", name=op.f("pk_decision_heads")),
    )


def downgrade() -> None:
    op.drop_table("decision_heads")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("listed")
        batch.drop_column("digest")
