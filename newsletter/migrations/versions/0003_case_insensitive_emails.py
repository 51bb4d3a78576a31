"""case-insensitive email indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "uq_subscribers_email_lower", "subscribers", [sa.text("lower(email)")], unique=True
    )
    op.create_index("ix_suppressions_email_lower", "suppressions", [sa.text("lower(email)")])


def downgrade() -> None:
    op.drop_index("ix_suppressions_email_lower", table_name="suppressions")
    op.drop_index("uq_subscribers_email_lower", table_name="subscribers")
