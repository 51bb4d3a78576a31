"""topics' example papers, not-examples, and whole categories

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("examples", "not_examples"):
        op.add_column(
            "topics",
            sa.Column(column, sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        )
    op.add_column(
        "topics",
        sa.Column("whole_categories", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("topics") as batch:
        for column in ("whole_categories", "not_examples", "examples"):
            batch.drop_column(column)
