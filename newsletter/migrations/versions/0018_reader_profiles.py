"""readers' profiles in the sentence model's space, kept up to date as they vote

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Empty at first: `newsletter feedback profiles --rebuild` fills it from the votes and
    # own papers, and until then a send works a missing reader's profile out as before.
    op.create_table(
        "reader_profiles",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("liked", sa.LargeBinary(), nullable=True),
        sa.Column("disliked", sa.LargeBinary(), nullable=True),
        sa.Column("own", sa.LargeBinary(), nullable=True),
        sa.Column("likes", sa.Integer(), nullable=False),
        sa.Column("dislikes", sa.Integer(), nullable=False),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_reader_profiles_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_reader_profiles")),
    )


def downgrade() -> None:
    op.drop_table("reader_profiles")
