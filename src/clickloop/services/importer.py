"""Import configuration from a JSON or YAML document, all or nothing.

The document has the lists `traffic_sources`, `affiliate_networks`, `offers` and `campaigns`;
entities refer to each other by name (`affiliate_network: "Admitad"`, `offers: [{name, weight}]`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import Engine

from clickloop.errors import InvalidInput
from clickloop.services import entities

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
SECTIONS = ("traffic_sources", "affiliate_networks", "offers", "campaigns")


def read_document(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise InvalidInput(str(path), "larger than 10 MiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(str(path), f"cannot read: {exc}") from exc
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(str(path), f"not valid {path.suffix or 'YAML'}: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidInput(str(path), "the document must be a mapping of sections")
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise InvalidInput(str(path), f"unknown sections: {', '.join(sorted(map(str, unknown)))}")
    return document


def import_document(
    engine: Engine, document: dict[str, Any], *, now: datetime
) -> dict[str, list[str]]:
    """Create every entity of the document in one transaction; return the names per section."""
    created: dict[str, list[str]] = {section: [] for section in SECTIONS}
    with engine.begin() as conn:
        for item in _items(document, "traffic_sources"):
            entities.add_traffic_source(conn, now=now, **item)
            created["traffic_sources"].append(item["name"])
        for item in _items(document, "affiliate_networks"):
            entities.add_affiliate_network(conn, now=now, **item)
            created["affiliate_networks"].append(item["name"])
        for item in _items(document, "offers"):
            network = item.pop("affiliate_network", None)
            if network is not None:
                item["affiliate_network_id"] = entities.find_id_by_name(
                    conn, "affiliate_networks", network
                )
            entities.add_offer(conn, now=now, **item)
            created["offers"].append(item["name"])
        for item in _items(document, "campaigns"):
            source = item.pop("traffic_source", None)
            if source is not None:
                item["traffic_source_id"] = entities.find_id_by_name(
                    conn, "traffic_sources", source
                )
            item["offers"] = [
                (
                    entities.find_id_by_name(conn, "offers", str(o["name"])),
                    int(o.get("weight", 100)),
                )
                for o in item.get("offers", [])
            ]
            entities.add_campaign(conn, now=now, **item)
            created["campaigns"].append(item["name"])
    return created


def _items(document: dict[str, Any], section: str) -> list[dict[str, Any]]:
    items = document.get(section) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput(section, "must be a list of mappings")
    for item in items:
        if not isinstance(item.get("name"), str):
            raise InvalidInput(section, "every entry needs a name")
    return [dict(item) for item in items]
