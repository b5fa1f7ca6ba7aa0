"""Use cases around the template catalog: make a traffic source or an affiliate network from a
template, re-apply a template to an entity made earlier, and check a user's templates file.

An entity stores a copy of what the template gave it (and the template's key), so a newer
catalog never changes it behind the user's back; re-applying is the explicit way to take it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from clickloop.catalog.templates import (
    CLICK_FIELDS,
    AffiliateNetworkTemplate,
    Catalog,
    Template,
    TrafficSourceTemplate,
    fill_fields,
    load_catalog,
    parse_user_file,
    recover_fields,
)
from clickloop.domain.macros import MacroValue, render
from clickloop.errors import Conflict, NotFound
from clickloop.services import entities
from clickloop.storage import tables as t

USER_TEMPLATES_FILES = ("templates.json", "templates.yaml", "templates.yml")
# What `templates validate` puts in a postback: a converted click with every macro of SPEC §4;
# the click fields only where a parameter row of the source captures them.
_SAMPLE_CLICK_FIELDS: dict[str, MacroValue] = {
    "external_id": "ext-88421",
    "keyword": "cheap flights",
    "cost": Decimal("0.05"),
}
_SAMPLE: dict[str, MacroValue] = {
    "subid": "0GZ3kT9xQ2mZ7aB",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (Linux; Android 14)",
    "referrer": "https://news.example.org/a?b=c",
    "language": "de",
    "country": "DE",
    "os": "Android",
    "browser": "Chrome",
    "device_type": "mobile",
    "status": "sale",
    "original_status": "approved",
    "tid": "tx-77",
    "payout": Decimal("12.50"),
    "conversion_cost": Decimal("1.25"),
    "profit": Decimal("11.25"),
    "currency": "USD",
    "campaign_id": 7,
    "campaign_name": "Summer DE",
    "offer_id": 3,
    "offer_name": "Flight deals",
    "ts_id": 2,
    "affiliate_network_name": "Sample network",
}


def load_user_catalog(data_dir: Path) -> Catalog:
    """The shipped catalog plus the user's own templates file in the data directory
    (templates.json, else templates.yaml or .yml)."""
    found = [data_dir / name for name in USER_TEMPLATES_FILES if (data_dir / name).exists()]
    return load_catalog(found[0] if found else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateCheck:
    """One template of a user's file as `templates validate` shows it: what it renders to
    for a sample click and conversion, and what would not work."""

    template: Template
    rendered: tuple[tuple[str, str], ...]  # (what, text)
    problems: tuple[str, ...]
    replaces_shipped: bool = False  # its key is a shipped template's, which it would replace


def check_templates_file(path: Path, *, now: datetime) -> tuple[TemplateCheck, ...]:
    """Validate a user's templates file against the schema (InvalidInput names the file, the
    entry and the field) and render each template's URLs against a sample click."""
    sources, networks = parse_user_file(path)
    shipped = load_catalog()
    checks = [_check_source(t, now) for t in sources] + [_check_network(t, now) for t in networks]
    return tuple(
        replace(check, replaces_shipped=check.template.key in shipped.keys(check.template))
        for check in checks
    )


def _sample_fields(template: Template) -> dict[str, str]:
    return {f.name: f.choices[0] if f.choices else f"sample-{f.name}" for f in template.fields}


def _check_source(template: TrafficSourceTemplate, now: datetime) -> TemplateCheck:
    link = "&".join(f"{row.param}={row.macro}" for row in template.parameters)
    rendered = [("campaign link", f"https://TRACKER/ALIAS?{link}")]
    if template.postback_url is None:
        return TemplateCheck(template=template, rendered=tuple(rendered), problems=())
    values: dict[str, MacroValue] = {
        row.name: _SAMPLE_CLICK_FIELDS.get(row.name, f"{row.name}-sample")
        for row in template.parameters
    }
    values |= _SAMPLE | {"date": now, "conversion_time": now}
    filled = fill_fields(template, _sample_fields(template)).postback_url or ""
    result = render(filled, values, now=now, rng=random.Random(0))
    rendered.append((f"S2S {template.postback_method}", result.text))
    problems = [
        f"sends {{{name}}}, which no parameter row captures: it renders empty"
        if name in CLICK_FIELDS
        else f"unknown macro {{{name}}} renders empty"
        for name in result.unknown
    ]
    parts = urlsplit(result.text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"the S2S URL renders to no http(s) URL: {result.text}")
    return TemplateCheck(template=template, rendered=tuple(rendered), problems=tuple(problems))


def _check_network(template: AffiliateNetworkTemplate, now: datetime) -> TemplateCheck:
    filled = fill_fields(template, _sample_fields(template))
    offer = render(filled.offer_params, _SAMPLE, now=now, rng=random.Random(0))
    rendered = [("offer URL", f"https://offer.example/lp?o=1{offer.text}")]
    problems = [f"unknown macro {{{name}}} renders empty" for name in offer.unknown]
    if str(_SAMPLE["subid"]) not in offer.text:
        problems.append("the offer parameters do not pass {subid}: postbacks match no click")
    if filled.postback_params is not None:
        url = network_postback_url("https://TRACKER", "POSTBACK_KEY", filled.postback_params)
        rendered.append(("postback URL for the network", url))
    return TemplateCheck(template=template, rendered=tuple(rendered), problems=tuple(problems))


def create_traffic_source_from_template(
    engine: Engine,
    catalog: Catalog,
    *,
    template_key: str,
    field_values: Mapping[str, str],
    now: datetime,
    name: str | None = None,
) -> int:
    """Create a traffic source filled from a template; its fields must all be given."""
    values = traffic_source_values(catalog, template_key, field_values)
    name = name or catalog.traffic_source(template_key).name
    with engine.begin() as conn:
        return entities.add_traffic_source(conn, name=name, now=now, **values)


def create_affiliate_network_from_template(
    engine: Engine,
    catalog: Catalog,
    *,
    template_key: str,
    field_values: Mapping[str, str],
    now: datetime,
    name: str | None = None,
) -> int:
    """Create an affiliate network filled from a template, and add the aliases it needs."""
    name = name or catalog.affiliate_network(template_key).name
    with engine.begin() as conn:
        values = add_affiliate_network_template(conn, catalog, template_key, field_values)
        return entities.add_affiliate_network(conn, name=name, now=now, **values)


def traffic_source_values(
    catalog: Catalog, template_key: str, field_values: Mapping[str, str]
) -> dict[str, Any]:
    """A traffic source's columns as its template fills them (all of its fields given)."""
    return _traffic_source_values(fill_fields(catalog.traffic_source(template_key), field_values))


def add_affiliate_network_template(
    conn: Connection, catalog: Catalog, template_key: str, field_values: Mapping[str, str]
) -> dict[str, Any]:
    """An affiliate network's columns as its template fills them; adds the parameter aliases
    its postbacks need."""
    template = fill_fields(catalog.affiliate_network(template_key), field_values)
    _add_aliases(conn, template)
    return _network_values(template)


def reapply_traffic_source_template(
    engine: Engine,
    catalog: Catalog,
    traffic_source_id: int,
    *,
    now: datetime,
    field_values: Mapping[str, str] | None = None,
    template_key: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Overwrite a traffic source with its template as the catalog has it now.

    Field values not given are read back from the entity's current URL where the template
    shows where they sit (`goal=VALUE&`). Returns the columns that changed (or would, with
    `dry_run`), with their new values.
    """
    with engine.connect() as conn:
        row = _row(conn, t.traffic_sources, traffic_source_id, "traffic source")
    key = _template_key(template_key, row, "traffic source", traffic_source_id)
    raw = catalog.traffic_source(key)
    recovered = recover_fields(raw.fields, (raw.postback_url or "",), (row["postback_url"] or "",))
    values = recovered | dict(field_values or {})
    new = _traffic_source_values(fill_fields(raw, values))
    return _overwrite(engine, "traffic_sources", row, new, now, dry_run=dry_run)


def reapply_affiliate_network_template(
    engine: Engine,
    catalog: Catalog,
    affiliate_network_id: int,
    *,
    now: datetime,
    field_values: Mapping[str, str] | None = None,
    template_key: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Overwrite an affiliate network with its template as the catalog has it now.

    Notes the user wrote are kept below the template's; see reapply_traffic_source_template
    for field values. Returns the columns that changed, new values.
    """
    with engine.connect() as conn:
        row = _row(conn, t.affiliate_networks, affiliate_network_id, "affiliate network")
    key = _template_key(template_key, row, "affiliate network", affiliate_network_id)
    raw = catalog.affiliate_network(key)
    recovered = recover_fields(
        raw.fields,
        (raw.offer_params, raw.postback_params or ""),
        (row["offer_params"], row["postback_params"]),
    )
    template = fill_fields(raw, recovered | dict(field_values or {}))
    new = _network_values(template)
    new.pop("notes")
    changed = _overwrite(engine, "affiliate_networks", row, new, now, dry_run=dry_run)
    if template.aliases and not dry_run:
        # After the entity: a clash then leaves the entity re-applied and says which alias.
        with engine.begin() as conn:
            _add_aliases(conn, template)
    return changed


def network_postback_url(base_url: str, postback_key: str, postback_params: str) -> str:
    """The URL to paste into the network: the tracker's postback endpoint and the parameters."""
    url = f"{base_url.rstrip('/')}/{postback_key}/postback"
    return f"{url}?{postback_params}" if postback_params else url


def _traffic_source_values(template: TrafficSourceTemplate) -> dict[str, Any]:
    return {
        "template": template.key,
        "parameters": [
            {"name": row.name, "param": row.param, "macro": row.macro}
            for row in template.parameters
        ],
        "postback_url": template.postback_url,
        "postback_method": template.postback_method,
        "postback_statuses": list(template.postback_statuses),
        "response_must_contain": template.response_must_contain,
    }


def _network_values(template: AffiliateNetworkTemplate) -> dict[str, Any]:
    notes = [text for text in (template.notes, template.defect) if text]
    return {
        "template": template.key,
        "offer_params": template.offer_params,
        "postback_params": template.postback_params or "",
        "status_trainings": {k: list(v) for k, v in template.status_trainings.items()},
        "notes": "\n".join(notes),
    }


def _add_aliases(conn: Connection, template: AffiliateNetworkTemplate) -> None:
    """Merge the template's parameter aliases into the settings; a clash is a Conflict."""
    if not template.aliases:
        return
    aliases = dict(entities.read_settings(conn)["aliases"])
    for alias, target in template.aliases:
        if aliases.get(alias, target) != target:
            raise Conflict("parameter alias", f"{alias} (already maps to {aliases[alias]})")
        aliases[alias] = target
    entities.write_setting(conn, "aliases", aliases)


def _row(conn: Connection, table: Any, row_id: int, kind: str) -> dict[str, Any]:
    row = conn.execute(select(table).where(table.c.id == row_id)).mappings().first()
    if row is None:
        raise NotFound(kind, row_id)
    return dict(row)


def _template_key(given: str | None, row: Mapping[str, Any], kind: str, row_id: int) -> str:
    key = given or row["template"]
    if not key:
        raise NotFound(f"template of {kind}", row_id)
    return str(key)


def _overwrite(
    engine: Engine,
    table_name: str,
    row: Mapping[str, Any],
    new: dict[str, Any],
    now: datetime,
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """Write the columns that differ, validated like any edit of the entity."""
    changed = {column: value for column, value in new.items() if row[column] != value}
    if changed and not dry_run:
        entities.update_entity(engine, table_name, row["id"], changed, now=now)
    return changed
