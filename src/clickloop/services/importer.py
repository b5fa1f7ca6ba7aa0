"""Import configuration from a JSON or YAML document (format version 1), all or nothing.

The format is the JSON Schema `import_schema.json` beside this module (docs/import.md).
Entities refer to each other by name; one that exists by name is updated to what the document
says (keys it leaves out keep their stored values), so importing a file twice changes nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from clickloop.catalog.templates import Catalog
from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import entities, templates
from clickloop.storage import tables as t

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
SECTIONS = ("traffic_sources", "affiliate_networks", "offers", "campaigns")


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """What importing one entry did (or, in a dry run, would do)."""

    section: str
    name: str
    action: str  # created, updated or unchanged


@functools.cache
def import_schema() -> dict[str, Any]:
    """The JSON Schema of the import format, as shipped in the package."""
    text = resources.files(__package__).joinpath("import_schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def read_document(path: Path) -> dict[str, Any]:
    """The document in `path` (JSON by its suffix, else YAML), checked against the schema."""
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
    check_document(document)
    return document  # type: ignore[no-any-return]


def check_document(document: Any) -> None:
    """Raise InvalidInput naming the entry and key of the first thing the schema refuses."""
    validator = jsonschema.Draft202012Validator(import_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        raise InvalidInput(_where(document, list(error.absolute_path)), error.message)


def import_document(
    engine: Engine,
    document: dict[str, Any],
    *,
    now: datetime,
    catalog: Catalog,
    dry_run: bool = False,
) -> list[Imported]:
    """Create or update every entry of the document in one transaction (rolled back when
    `dry_run`); what happened to each entry, in the document's order."""
    check_document(document)
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            results = list(_import(conn, document, now=now, catalog=catalog))
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return results


def _import(
    conn: Connection, document: dict[str, Any], *, now: datetime, catalog: Catalog
) -> Iterator[Imported]:
    for section in SECTIONS:
        for index, item in enumerate(document.get(section) or []):
            where = f"{section}[{index}] ({item['name']})"
            try:
                values = _values(conn, section, dict(item), catalog)
                action = _upsert(conn, section, values, now)
            except InvalidInput as exc:
                raise InvalidInput(f"{where}.{exc.field}", exc.reason) from exc
            except (NotFound, Conflict) as exc:
                raise InvalidInput(where, str(exc)) from exc
            yield Imported(section=section, name=item["name"], action=action)


def _values(
    conn: Connection, section: str, item: dict[str, Any], catalog: Catalog
) -> dict[str, Any]:
    """The entry as the entity functions take it: names resolved to ids, templates applied."""
    template = item.pop("template", None)
    fields = {name: str(value) for name, value in item.pop("fields", {}).items()}
    if section == "traffic_sources" and template is not None:
        return templates.traffic_source_values(catalog, template, fields) | item
    if section == "affiliate_networks" and template is not None:
        return templates.add_affiliate_network_template(conn, catalog, template, fields) | item
    if section == "offers" and "affiliate_network" in item:
        network = item.pop("affiliate_network")
        item["affiliate_network_id"] = _id_or_none(conn, "affiliate_networks", network)
    if section == "campaigns":
        if "traffic_source" in item:
            source = item.pop("traffic_source")
            item["traffic_source_id"] = _id_or_none(conn, "traffic_sources", source)
        if "offers" in item:
            item["offers"] = [
                (entities.find_id_by_name(conn, "offers", offer["name"]), offer.get("weight", 100))
                for offer in item["offers"]
            ]
    if fields:
        raise InvalidInput("fields", "template fields need a template")
    return item


def _upsert(conn: Connection, section: str, values: dict[str, Any], now: datetime) -> str:
    table = t.metadata.tables[section]
    existing = conn.execute(select(table.c.id).where(table.c.name == values["name"])).scalar()
    if existing is not None:
        changed = entities.change_entity(conn, section, int(existing), values, now=now)
        return "updated" if changed else "unchanged"
    add = {
        "traffic_sources": entities.add_traffic_source,
        "affiliate_networks": entities.add_affiliate_network,
        "offers": entities.add_offer,
        "campaigns": entities.add_campaign,
    }[section]
    add(conn, now=now, **values)
    return "created"


def _id_or_none(conn: Connection, table_name: str, name: str | None) -> int | None:
    return None if name is None else entities.find_id_by_name(conn, table_name, name)


def _where(document: Any, path: list[str | int]) -> str:
    """`offers[2] (Shop).payout`: the path to a value, with the name of the entry it is in."""
    if not path:
        return "document"
    where = str(path[0])
    node = document.get(path[0]) if isinstance(document, dict) else None
    for part in path[1:]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        if isinstance(part, int) and isinstance(node, dict) and isinstance(node.get("name"), str):
            where += f" ({node['name']})"
    return where
