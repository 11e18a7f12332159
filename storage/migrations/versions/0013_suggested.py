"""each conversation's suggested people: who to ask, found when it came in

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 20:30:00

`conversation.suggested`: up to two people outside its departments who resolved or replied to
conversations like it (`bot.suggest`), read with the row.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suggested', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('conversation', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('suggested')
