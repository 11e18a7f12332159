"""closing the loop: whether a person is told when a conversation they sent in is resolved

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 21:45:00

`person.notify` (true by default: `notify off` stops the messages). Rerouting needs no new column: its
`rerouted` event carries `from`, `to` and the routing `rules` in its JSON data, as `ingested` events now
carry `rules`. A plain ADD COLUMN (no batch mode: it works on SQLite as it is).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('person', sa.Column('notify', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('person', schema=None, recreate='never') as batch:
        batch.drop_column('notify')
