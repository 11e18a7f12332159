"""retired departments, removed sources, a rotated secret's grace period

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:45:00

A department dropped from the config is retired (`retired_at`), not deleted: its closed
conversations keep naming it. A source removed while conversations name it is marked
(`removed_at`). A webhook's secret rotated with a grace period keeps the old one
(`previous_secret`) until `previous_secret_expires_at`.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401 (mypy: the submodule the columns name)
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('department', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retired_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('source', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_secret', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('removed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('source', schema=None) as batch_op:
        batch_op.drop_column('removed_at')
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_secret')
    with op.batch_alter_table('department', schema=None) as batch_op:
        batch_op.drop_column('retired_at')
