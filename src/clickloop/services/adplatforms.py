"""Adding an ad platform's conversion API (Meta, TikTok) as an S2S target of a campaign or a
traffic source: the preset becomes an ordinary target, validated and stored like one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from clickloop.domain.adplatforms import build_postback, parse_target
from clickloop.services import entities


def add_campaign_postback(
    engine: Engine, campaign_id: int, fields: Mapping[str, Any], *, now: datetime
) -> dict[str, Any]:
    """Append the platform's target to the campaign's S2S postbacks; return the postback."""
    postback = build_postback(parse_target(fields))
    campaign = entities.get_entity(engine, "campaigns", campaign_id)
    kept = [{name: pb[name] for name in entities.POSTBACK_FIELDS} for pb in campaign["postbacks"]]
    entities.update_entity(
        engine, "campaigns", campaign_id, {"postbacks": [*kept, postback]}, now=now
    )
    return postback


def set_source_postback(
    engine: Engine, source_id: int, fields: Mapping[str, Any], *, now: datetime
) -> dict[str, Any]:
    """Make the platform's target the traffic source's S2S postback; return it."""
    postback = build_postback(parse_target(fields))
    entities.update_entity(
        engine,
        "traffic_sources",
        source_id,
        {
            "postback_url": postback["url"],
            "postback_method": postback["method"],
            "postback_body": postback["body"],
            "postback_headers": postback["headers"],
            "postback_statuses": postback["statuses"],
        },
        now=now,
    )
    return postback
