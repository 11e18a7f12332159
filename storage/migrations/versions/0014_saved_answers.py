"""saved answers (the answer library) and their own full-text index

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 20:30:00

`savedanswer`: a reply saved with a title, pre-approved when a manager approved it on a conversation a
sensitive rule held (which rules: `approved_rules`). Its index (`storage.answers`): SQLite an FTS5 table
`answer_fts`, PostgreSQL `answer_search` (tsvector, GIN), kept in step by triggers.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401 (mypy: the submodule the columns name)
from alembic import op

from storage import answers

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'savedanswer',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('saved_by_id', sa.Integer(), nullable=True),
        sa.Column('reply_id', sa.Integer(), nullable=True),
        sa.Column('conversation_id', sa.Integer(), nullable=True),
        sa.Column('departments', sa.JSON(), nullable=False),
        sa.Column('pre_approved', sa.Boolean(), nullable=False),
        sa.Column('approved_by_id', sa.Integer(), nullable=True),
        sa.Column('approved_rules', sa.JSON(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('uses', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['approved_by_id'], ['person.id']),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id']),
        sa.ForeignKeyConstraint(['reply_id'], ['reply.id']),
        sa.ForeignKeyConstraint(['saved_by_id'], ['person.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    for statement in answers.schema(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in answers.drop_schema(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table('savedanswer')
