"""the deliverability guard's pause on editions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("editions", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("editions", sa.Column("pause_reason", sa.String(length=300), nullable=True))
    op.add_column("editions", sa.Column("guard_baseline", sa.JSON(), nullable=True))
    op.add_column(
        "editions", sa.Column("guard_cleared_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        for column in ("guard_cleared_at", "guard_baseline", "pause_reason", "paused_at"):
            batch.drop_column(column)
