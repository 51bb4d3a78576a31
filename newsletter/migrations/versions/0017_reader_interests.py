"""readers' interests in their own words, with their sentence vector

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscribers",
        sa.Column("interests", sa.Text(), nullable=False, server_default=sa.text("''")),
    )
    op.add_column("subscribers", sa.Column("interests_model", sa.String(64), nullable=True))
    op.add_column("subscribers", sa.Column("interests_vector", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("interests_vector")
        batch.drop_column("interests_model")
        batch.drop_column("interests")
