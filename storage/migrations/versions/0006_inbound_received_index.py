"""Inbound event keys are purged once no retry can come any more: an index on when they came.

Revision ID: 0006
Revises: 0005

`inbound_event` holds one row per platform event and per person's action (the key a retried
request or a retried command is recognised by). They were never deleted; the scheduler's sweep
now deletes those older than `INBOUND_KEPT` (`bot/scheduler.py`), which needs this index.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('inboundevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inboundevent_received_at'), ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inboundevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inboundevent_received_at'))
