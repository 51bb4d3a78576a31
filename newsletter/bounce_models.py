"""The bounce event model: one row per bounce or complaint read, kept for counts and rates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.models import Base, utcnow


class BounceEvent(Base):
    """A hard or soft bounce or a complaint about one address, from one returned message."""

    __tablename__ = "bounce_events"
    __table_args__ = (
        # Soft bounces are counted per address within a window.
        Index("ix_bounce_events_email_lower", func.lower(text("email")), "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16))
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    # Set when the VERP token named the delivery: what makes rates per edition possible.
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    # A hash of the returned message: reading the same message twice records it once.
    message_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
