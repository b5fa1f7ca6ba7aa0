"""user roles and disabled users, API token roles, the exchange-rate update record

Revision ID: 0007_roles_and_rate_updates
Revises: 0006_conversions_by_time
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_roles_and_rate_updates"
down_revision = "0006_conversions_by_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Users and tokens that exist already were all-powerful: they stay admins.
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="admin")
        )
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="admin")
        )
    op.create_table(
        "rate_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rates_as_of", sa.String(length=10), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_updates")),
    )


def downgrade() -> None:
    op.drop_table("rate_updates")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("role")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("role")
