"""spike alerts: one row per announced spike, unique per (department, scope, cooldown bucket)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 22:00:00

`spikealert`: what moved, how much against its baseline, the conversations of the window and the
scopes it covers (quiet for the cooldown afterwards). The unique `key` keeps it once across replicas.
`ix_conversation_ingested_at`: a check reads the new conversations of a few windows of time.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401 (mypy: the submodule the columns name)
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'spikealert',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('department', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('scopes', sa.JSON(), nullable=False),
        sa.Column('window_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('window_end', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('baseline', sa.Float(), nullable=False),
        sa.Column('conversation_ids', sa.JSON(), nullable=False),
        sa.Column('terms', sa.JSON(), nullable=False),
        sa.Column('notice', sa.JSON(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    op.create_index('ix_spikealert_department_created', 'spikealert', ['department', 'created_at'], unique=False)
    # A plain CREATE INDEX (no batch mode): the conversation table and its search triggers stay as they are.
    op.create_index('ix_conversation_ingested_at', 'conversation', ['ingested_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_conversation_ingested_at', table_name='conversation')
    op.drop_index('ix_spikealert_department_created', table_name='spikealert')
    op.drop_table('spikealert')
