"""link keys, ids never reused, consent history

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose ids appear in links or return paths: SQLite must never hand one out twice.
NEVER_REUSED = ("subscribers", "deliveries")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("subscribers", sa.Column("link_key", sa.String(length=32), nullable=True))
    if sqlite:
        op.execute("UPDATE subscribers SET link_key = lower(hex(randomblob(12)))")
    else:
        op.execute("UPDATE subscribers SET link_key = replace(gen_random_uuid()::text, '-', '')")
        op.alter_column("subscribers", "link_key", nullable=False)
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_consent_events_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_consent_events_subscriber_id"), "consent_events", ["subscriber_id"], unique=False
    )
    op.create_table(
        "mail_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_mail_queue_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_queue")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_mail_queue_subscriber_id"), "mail_queue", ["subscriber_id"], unique=False
    )
    op.create_index(
        op.f("ix_mail_queue_next_attempt_at"), "mail_queue", ["next_attempt_at"], unique=False
    )
    if sqlite:
        for table in NEVER_REUSED:
            _rebuild_with_autoincrement(table)


def _rebuild_with_autoincrement(table: str) -> None:
    """Copy a SQLite table into one declared AUTOINCREMENT, keeping its indexes.

    A hand-written copy rather than a batch operation: reflection cannot see the expression
    index on lower(email). The caller runs with foreign keys off (see migrations/env.py), so
    dropping the old table does not cascade into the rows that refer to it.
    """
    conn = op.get_bind()
    create = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    indexes = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,),
    ).scalars().all()
    new = f"{table}_autoincrement"
    ddl = re.sub(r",\s*CONSTRAINT pk_\w+ PRIMARY KEY \(id\)", "", create, count=1)
    ddl = re.sub(r"\bid INTEGER NOT NULL", "id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL", ddl)
    ddl = ddl.replace("link_key VARCHAR(32)", "link_key VARCHAR(32) NOT NULL")
    ddl = re.sub(rf"^CREATE TABLE \"?{table}\"?", f"CREATE TABLE {new}", ddl)
    if "AUTOINCREMENT" not in ddl:
        raise RuntimeError(f"cannot rebuild {table}: unexpected schema")
    op.execute(ddl)
    op.execute(f"INSERT INTO {new} SELECT * FROM {table}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {new} RENAME TO {table}")
    for index in indexes:
        op.execute(index)


def downgrade() -> None:
    op.drop_table("mail_queue")
    op.drop_index(op.f("ix_consent_events_subscriber_id"), table_name="consent_events")
    op.drop_table("consent_events")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("link_key")
