"""the writers' seal marks: a cube's spans of several days are sealed a chunk of keys per
transaction between the writers' mark, row `kept:<cube>` of `cube_watermarks`, and the readers'
mark, row `spans:<cube>` (storage/cube_spans.py), so that the writers wait for one chunk instead
of a whole cube's day

Revision ID: 0028_writers_seal_marks
Revises: 0027_sealed_spans
"""

from __future__ import annotations

from alembic import op

revision = "0028_writers_seal_marks"
down_revision = "0027_sealed_spans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The writers have kept every span up to the (then single) mark.
    op.execute(
        "INSERT INTO cube_watermarks (name, position) "
        "SELECT 'kept:' || substr(name, 7), position FROM cube_watermarks "
        "WHERE substr(name, 1, 6) = 'spans:'"
    )


def downgrade() -> None:
    # A seal stopped half-way leaves the writers' mark ahead: the version before seals that day
    # again, whole, from the readers' mark.
    op.execute("DELETE FROM cube_watermarks WHERE substr(name, 1, 5) = 'kept:'")
