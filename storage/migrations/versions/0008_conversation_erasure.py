"""A conversation whose customer data was erased says so: when, and why (on request, or retention).

Revision ID: 0008
Revises: 0007

Erasure (`storage/erasure.py`) blanks the customer's data in place and keeps the row for the
figures; `erased_at` / `erased_why` let the card say "Erased on request, <date>".
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401 (mypy: the submodule the columns name)
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column('erased_why', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default='')
        )


def downgrade() -> None:
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.drop_column('erased_why')
        batch_op.drop_column('erased_at')
