"""who holds a delivery's lease, and when a send was attempted

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:20:00

A delivery is sent only by the worker whose lease it is at that moment (`holder`,
checked by a conditional update just before the send), and the send is recorded as
attempted (`attempted_at`) in its own commit first, so a delivery whose outcome is
unknown after a crash is recognised when it comes back.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401 (mypy: the submodule the columns name)
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('attempted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_column('attempted_at')
        batch_op.drop_column('holder')
