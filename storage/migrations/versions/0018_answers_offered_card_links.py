"""each conversation's fitting saved answers (what its reply form offers), and each posted card's link

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 21:50:00

`conversation.answers`: up to three saved answers that fit it best (`storage.answers`), [{"id", "title"}],
read with the row (a card rendered with its reply form costs no extra statement). `posting.link`: where
people open a posted card (a permalink, a deep link), which a message on another platform points to.
Plain ADD COLUMNs (no table rebuild on SQLite: the conversations' FTS triggers stay).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('conversation', sa.Column('answers', sa.JSON(), nullable=False, server_default='[]'))
    op.add_column('posting', sa.Column('link', sa.String(length=1000), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('posting', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('link')
    with op.batch_alter_table('conversation', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('answers')
