"""feedback votes, followed authors, muted words, personal keywords

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("follow_authors", "muted_words", "personal_keywords"):
        op.add_column(
            "subscribers",
            sa.Column(column, sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        )
    op.create_table(
        "feedback_votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("vote", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_feedback_votes_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_feedback_votes_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_votes")),
        sa.UniqueConstraint(
            "subscriber_id", "paper_id", name=op.f("uq_feedback_votes_subscriber_id")
        ),
    )
    op.create_index(
        op.f("ix_feedback_votes_paper_id"), "feedback_votes", ["paper_id"], unique=False
    )
    op.create_index(
        op.f("ix_feedback_votes_subscriber_id"), "feedback_votes", ["subscriber_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("feedback_votes")
    with op.batch_alter_table("subscribers") as batch:
        for column in ("follow_authors", "muted_words", "personal_keywords"):
            batch.drop_column(column)
