"""a customer's earlier conversations: indexes on the author's handle and profile URL, case-insensitive

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:40:00

A card says "2 earlier conversations from this author" (same handle or same profile URL, whatever
the case, across sources); these indexes find them newest first without a scan, so a
customer with thousands of conversations costs a card no more than one with two.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_conversation_author_handle_lower', 'conversation', [sa.text('lower(author_handle)'), 'id'], unique=False)
    op.create_index('ix_conversation_author_url_lower', 'conversation', [sa.text('lower(author_url)'), 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_conversation_author_url_lower', table_name='conversation')
    op.drop_index('ix_conversation_author_handle_lower', table_name='conversation')
