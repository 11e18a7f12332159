"""a noise budget per channel: delivery modes, quiet hours, batched deliveries

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 21:40:00

`destination.mode`/`quiet` (from the config) and `chat_mode`/`chat_quiet` (set from chat, winning
until reset); `delivery.batch_key`: the held card deliveries of one window and their batch message.
Plain ADD COLUMNs (no table rebuild on SQLite).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('destination', sa.Column('mode', sa.String(length=32), nullable=False, server_default='realtime'))
    op.add_column('destination', sa.Column('quiet', sa.String(length=64), nullable=False, server_default=''))
    op.add_column('destination', sa.Column('chat_mode', sa.String(length=32), nullable=True))
    op.add_column('destination', sa.Column('chat_quiet', sa.String(length=64), nullable=True))
    op.add_column('delivery', sa.Column('batch_key', sa.String(length=255), nullable=True))
    op.create_index('ix_delivery_batch', 'delivery', ['batch_key'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_delivery_batch', table_name='delivery')
    with op.batch_alter_table('delivery', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('batch_key')
    with op.batch_alter_table('destination', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('chat_quiet')
        batch_op.drop_column('chat_mode')
        batch_op.drop_column('quiet')
        batch_op.drop_column('mode')
