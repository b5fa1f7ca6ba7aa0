"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 08:16:26.455898
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "affiliate_networks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=True),
        sa.Column("offer_params", sa.Text(), nullable=False),
        sa.Column("postback_params", sa.Text(), nullable=False),
        sa.Column("status_trainings", sa.JSON(), nullable=False),
        sa.Column("postback_allowed_ips", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_affiliate_networks")),
        sa.UniqueConstraint("name", name=op.f("uq_affiliate_networks_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "clicks",
        sa.Column("subid", sa.String(length=24), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=True),
        sa.Column("traffic_source_id", sa.Integer(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("keyword", sa.Text(), nullable=True),
        sa.Column("cost", sa.BigInteger(), nullable=True),
        sa.Column("creative_id", sa.Text(), nullable=True),
        sa.Column("ad_campaign_id", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("sub_id_1", sa.Text(), nullable=True),
        sa.Column("sub_id_2", sa.Text(), nullable=True),
        sa.Column("sub_id_3", sa.Text(), nullable=True),
        sa.Column("sub_id_4", sa.Text(), nullable=True),
        sa.Column("sub_id_5", sa.Text(), nullable=True),
        sa.Column("sub_id_6", sa.Text(), nullable=True),
        sa.Column("sub_id_7", sa.Text(), nullable=True),
        sa.Column("sub_id_8", sa.Text(), nullable=True),
        sa.Column("sub_id_9", sa.Text(), nullable=True),
        sa.Column("sub_id_10", sa.Text(), nullable=True),
        sa.Column("sub_id_11", sa.Text(), nullable=True),
        sa.Column("sub_id_12", sa.Text(), nullable=True),
        sa.Column("sub_id_13", sa.Text(), nullable=True),
        sa.Column("sub_id_14", sa.Text(), nullable=True),
        sa.Column("sub_id_15", sa.Text(), nullable=True),
        sa.Column("sub_id_16", sa.Text(), nullable=True),
        sa.Column("sub_id_17", sa.Text(), nullable=True),
        sa.Column("sub_id_18", sa.Text(), nullable=True),
        sa.Column("sub_id_19", sa.Text(), nullable=True),
        sa.Column("sub_id_20", sa.Text(), nullable=True),
        sa.Column("sub_id_21", sa.Text(), nullable=True),
        sa.Column("sub_id_22", sa.Text(), nullable=True),
        sa.Column("sub_id_23", sa.Text(), nullable=True),
        sa.Column("sub_id_24", sa.Text(), nullable=True),
        sa.Column("sub_id_25", sa.Text(), nullable=True),
        sa.Column("sub_id_26", sa.Text(), nullable=True),
        sa.Column("sub_id_27", sa.Text(), nullable=True),
        sa.Column("sub_id_28", sa.Text(), nullable=True),
        sa.Column("sub_id_29", sa.Text(), nullable=True),
        sa.Column("sub_id_30", sa.Text(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column("language", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("os", sa.String(length=64), nullable=True),
        sa.Column("browser", sa.String(length=64), nullable=True),
        sa.Column("device_type", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("subid", name=op.f("pk_clicks")),
    )
    with op.batch_alter_table("clicks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_clicks_campaign_id_created_at", ["campaign_id", "created_at"], unique=False
        )

    op.create_table(
        "conversion_types",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_conversion_types")),
    )
    op.create_table(
        "exchange_rates",
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("per_eur", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("as_of", sa.String(length=10), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("currency", name=op.f("pk_exchange_rates")),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_settings")),
    )
    op.create_table(
        "traffic_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("postback_url", sa.Text(), nullable=True),
        sa.Column("postback_method", sa.String(length=8), nullable=False),
        sa.Column("postback_body", sa.Text(), nullable=True),
        sa.Column("postback_statuses", sa.JSON(), nullable=False),
        sa.Column("response_must_contain", sa.Text(), nullable=True),
        sa.Column("postback_enabled", sa.Boolean(), nullable=False),
        sa.Column("postback_disabled_reason", sa.Text(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_traffic_sources_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("traffic_source_id", sa.Integer(), nullable=True),
        sa.Column("cost_model", sa.String(length=16), nullable=False),
        sa.Column("cost_value", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["traffic_source_id"],
            ["traffic_sources.id"],
            name=op.f("fk_campaigns_traffic_source_id_traffic_sources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("alias", name=op.f("uq_campaigns_alias")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    op.create_table(
        "conversions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subid", sa.String(length=24), nullable=False),
        sa.Column("tid", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("original_status", sa.Text(), nullable=False),
        sa.Column("payout", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("original_payout", sa.BigInteger(), nullable=False),
        sa.Column("original_currency", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.String(length=40), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=True),
        sa.Column("traffic_source_id", sa.Integer(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subid"], ["clicks.subid"], name=op.f("fk_conversions_subid_clicks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversions")),
        sa.UniqueConstraint("subid", "tid", name=op.f("uq_conversions_subid_tid")),
    )
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversions_campaign_id_converted_at", ["campaign_id", "converted_at"], unique=False
        )

    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("affiliate_network_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payout", sa.BigInteger(), nullable=False),
        sa.Column("upsell", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["affiliate_network_id"],
            ["affiliate_networks.id"],
            name=op.f("fk_offers_affiliate_network_id_affiliate_networks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
        sa.UniqueConstraint("name", name=op.f("uq_offers_name")),
    )
    op.create_table(
        "campaign_offers",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_offers_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_campaign_offers_offer_id_offers")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "offer_id", name=op.f("pk_campaign_offers")),
    )
    op.create_table(
        "campaign_postbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("statuses", sa.JSON(), nullable=False),
        sa.Column("response_must_contain", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_postbacks_campaign_id_campaigns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_postbacks")),
    )
    with op.batch_alter_table("campaign_postbacks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_postbacks_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversion_id", sa.Integer(), nullable=False),
        sa.Column("target_kind", sa.String(length=24), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("response_must_contain", sa.Text(), nullable=True),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversion_id"],
            ["conversions.id"],
            name=op.f("fk_deliveries_conversion_id_conversions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_deliveries_dedup_key")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_conversion_id"), ["conversion_id"], unique=False
        )
        batch_op.create_index(
            "ix_deliveries_state_attempts_next_attempt_at",
            ["state", "attempts", "next_attempt_at"],
            unique=False,
        )

    op.create_table(
        "received_postbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("remote_ip", sa.String(length=45), nullable=True),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("subid", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("conversion_id", sa.Integer(), nullable=True),
        sa.Column("reprocessed_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversion_id"],
            ["conversions.id"],
            name=op.f("fk_received_postbacks_conversion_id_conversions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_postbacks")),
    )
    with op.batch_alter_table("received_postbacks", schema=None) as batch_op:
        batch_op.create_index("ix_received_postbacks_outcome_id", ["outcome", "id"], unique=False)
        batch_op.create_index("ix_received_postbacks_subid", ["subid"], unique=False)

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error_kind", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_delivery_id"), ["delivery_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_delivery_id"))

    op.drop_table("delivery_attempts")
    with op.batch_alter_table("received_postbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_received_postbacks_subid")
        batch_op.drop_index("ix_received_postbacks_outcome_id")

    op.drop_table("received_postbacks")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_state_attempts_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_deliveries_conversion_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("campaign_postbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_postbacks_campaign_id"))

    op.drop_table("campaign_postbacks")
    op.drop_table("campaign_offers")
    op.drop_table("offers")
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.drop_index("ix_conversions_campaign_id_converted_at")

    op.drop_table("conversions")
    op.drop_table("campaigns")
    op.drop_table("users")
    op.drop_table("traffic_sources")
    op.drop_table("settings")
    op.drop_table("exchange_rates")
    op.drop_table("conversion_types")
    with op.batch_alter_table("clicks", schema=None) as batch_op:
        batch_op.drop_index("ix_clicks_campaign_id_created_at")

    op.drop_table("clicks")
    op.drop_table("api_tokens")
    op.drop_table("affiliate_networks")
