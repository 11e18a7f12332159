"""voices: items merged into an open conversation, and the index that finds it (`bot.voices`)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 21:50:00

`voice`: another item saying the same thing as a conversation (same canonical link or near-identical
text), kept for `split`. `voicekey`: canonical-link and MinHash-band keys, each owned by one conversation
(the primary key decides between replicas). `conversation.voice_count`: a plain ADD COLUMN (no batch
rebuild of `conversation`, which would drop the full-text triggers on SQLite).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401 (mypy: the submodule the columns name)
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('conversation', sa.Column('voice_count', sa.Integer(), server_default='0', nullable=False))
    op.create_table(
        'voice',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column('author_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('author_handle', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('author_url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('joined_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('how', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('origin_id', sa.Integer(), nullable=True),
        sa.Column('similarity', sa.Float(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id']),
        sa.ForeignKeyConstraint(['origin_id'], ['conversation.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'external_id', name='uq_voice_source_external'),
    )
    op.create_index('ix_voice_conversation_id', 'voice', ['conversation_id'])
    op.create_index('ix_voice_origin_id', 'voice', ['origin_id'])
    op.create_index('ix_voice_author_handle_lower', 'voice', [sa.text('lower(author_handle)')])
    op.create_index('ix_voice_author_url_lower', 'voice', [sa.text('lower(author_url)')])
    op.create_table(
        'voicekey',
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id']),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_voicekey_conversation_id', 'voicekey', ['conversation_id'])


def downgrade() -> None:
    op.drop_table('voicekey')
    op.drop_table('voice')
    with op.batch_alter_table('conversation', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('voice_count')
