"""a full-text index of conversations, and each conversation's "seen before" list

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 20:00:00

SQLite: an FTS5 table `conversation_fts` (porter stemming) with its vocabulary, and a probe table
that tokenizes new conversations' words; PostgreSQL: a table `conversation_search` with a
`tsvector` document and a GIN index. On both, triggers keep one document per conversation (its
title, text, author, notes and replies) in step with the rows; the upgrade fills it from the
existing ones (`storage.search`). `conversation.seen_before`: the resolved conversations most
like it, found when it came in.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage import search

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seen_before', sa.JSON(), nullable=False, server_default='[]'))
    bind = op.get_bind()
    dialect = bind.dialect.name
    for statement in search.schema(dialect):
        op.execute(statement)
    # The existing conversations, a chunk per statement (each within PostgreSQL's statement timeout).
    low, high = bind.execute(sa.text("SELECT min(id), max(id) FROM conversation")).one()
    if high is not None:
        for start in range(int(low), int(high) + 1, search.FILL_CHUNK):
            op.execute(search.fill(dialect, start, start + search.FILL_CHUNK - 1))


def downgrade() -> None:
    for statement in search.drop_schema(op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table('conversation', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('seen_before')
