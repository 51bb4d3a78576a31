"""papers' DOI, venue (journal or preprint server) and journal link

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("doi", sa.String(255), nullable=True))
        batch.add_column(sa.Column("venue", sa.String(300), nullable=True))
        batch.add_column(sa.Column("url_journal", sa.String(2048), nullable=True))
        batch.create_unique_constraint("uq_papers_doi", ["doi"])


def downgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.drop_constraint("uq_papers_doi", type_="unique")
        for column in ("url_journal", "venue", "doi"):
            batch.drop_column(column)
