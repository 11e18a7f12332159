"""indexes for digests and personal stats

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:00:00

Measured on 1,000,000 conversations (bench/digest.py): without `resolved_at` indexed a
weekly digest scans the whole conversation table.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.create_index('ix_conversation_resolved_at', ['resolved_at'], unique=False)
    with op.batch_alter_table('conversationdepartment', schema=None) as batch_op:
        batch_op.drop_index('ix_conversationdepartment_department_id')
        batch_op.create_index('ix_conversationdepartment_department', ['department_id', 'conversation_id'],
                              unique=False)
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index('ix_event_actor_kind_at', ['actor_id', 'kind', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_actor_kind_at')
    with op.batch_alter_table('conversationdepartment', schema=None) as batch_op:
        batch_op.drop_index('ix_conversationdepartment_department')
        batch_op.create_index('ix_conversationdepartment_department_id', ['department_id'], unique=False)
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.drop_index('ix_conversation_resolved_at')
