"""bounce reasons

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("bounce_events", sa.Column("reason", sa.String(length=32), nullable=True))
    # Events recorded before reasons existed keep what their kind alone said.
    op.execute("UPDATE bounce_events SET reason = 'complaint' WHERE kind = 'complaint'")


def downgrade() -> None:
    with op.batch_alter_table("bounce_events") as batch:
        batch.drop_column("reason")
