"""bounce events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("message_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_bounce_events_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_events")),
        sa.UniqueConstraint("message_hash", name=op.f("uq_bounce_events_message_hash")),
    )
    op.create_index(
        op.f("ix_bounce_events_delivery_id"), "bounce_events", ["delivery_id"], unique=False
    )
    op.create_index(
        "ix_bounce_events_email_lower",
        "bounce_events",
        [sa.text("lower(email)"), "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_bounce_events_email_lower", table_name="bounce_events")
    op.drop_index(op.f("ix_bounce_events_delivery_id"), table_name="bounce_events")
    op.drop_table("bounce_events")
