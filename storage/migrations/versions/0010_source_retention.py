"""a source's own retention: `source.retain_days` (None: the global default)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 20:00:00

Webhook and CLI-added sources can keep their closed conversations' text for their own number of
days (`unsilo sources add-webhook … --retain-days N`, `unsilo sources set NAME --retain-days N`);
existing sources keep the global default (NULL).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('source', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retain_days', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('source', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('retain_days')
