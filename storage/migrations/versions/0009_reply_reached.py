"""a conversation is replied once a reply reached the customer, not when one was written

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 19:00:00

`first_reply_at` is now when a reply was first delivered (or marked posted by hand), and
the status becomes `replied` only then; `reply_written_at` is when a reply was first written
in any state (held for approval, rejected, recorded): a card with one shows its latest reply.

Existing data is corrected: `reply_written_at` from the replies; `first_reply_at` from the
first sent or posted reply (none: cleared, so a rejected reply no longer counts as answered
in digests); an active conversation in status `replied` without any sent or posted reply is
`claimed` again. Conversations without any reply row are left as they are.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401 (mypy: the submodule the columns name)
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REACHED = "reply.status IN ('sent', 'posted')"


def upgrade() -> None:
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_written_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE conversation SET reply_written_at = "
        "(SELECT min(reply.created_at) FROM reply WHERE reply.conversation_id = conversation.id)"
    )
    has_replies = "EXISTS (SELECT 1 FROM reply WHERE reply.conversation_id = conversation.id)"
    op.execute(
        "UPDATE conversation SET first_reply_at = "
        f"(SELECT min(coalesce(reply.sent_at, reply.created_at)) FROM reply "
        f"WHERE reply.conversation_id = conversation.id AND {_REACHED}) "
        f"WHERE {has_replies}"
    )
    op.execute(
        "UPDATE conversation SET status = 'claimed', version = version + 1 "
        f"WHERE status = 'replied' AND {has_replies} AND NOT EXISTS "
        f"(SELECT 1 FROM reply WHERE reply.conversation_id = conversation.id AND {_REACHED})"
    )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): rebuilding the table would break the replies' foreign keys.
    with op.batch_alter_table('conversation', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('reply_written_at')
