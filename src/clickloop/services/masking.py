"""The secrets the traffic sources' templates declare, gathered for masking what is shown of
S2S targets and deliveries (API, CLI, UI, logs); name patterns apply everywhere anyway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.catalog.templates import load_catalog, source_secrets
from clickloop.domain.secrets import (
    MIN_DECLARED_VALUE,
    DeclaredSecrets,
    mask_headers,
    mask_secrets,
    secret_header_values,
    secret_values,
)
from clickloop.errors import InvalidInput, NotFound
from clickloop.services.templates import load_user_catalog
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine


def log_secrets(engine: Engine, data_dir: Path) -> DeclaredSecrets:
    """What log lines must never show: the declared secrets and the postback key, which is in
    the path of every postback URL (the access log prints the path)."""
    declared = declared_secrets(engine, data_dir)
    with reader_engine(engine).connect() as conn:
        key = conn.execute(
            select(t.settings.c.value).where(t.settings.c.key == "postback_key")
        ).scalar()
    extra = {key} if isinstance(key, str) and key else set()
    return DeclaredSecrets(names=declared.names, values=declared.values | extra)


def declared_secrets(engine: Engine, data_dir: Path) -> DeclaredSecrets:
    """Every secret the traffic sources declare through their templates, for masking."""
    try:
        catalog = load_user_catalog(data_dir)
    except InvalidInput:  # a broken user file must not unmask the shipped templates' secrets
        catalog = load_catalog()
    ts, cp = t.traffic_sources.c, t.campaign_postbacks.c
    with reader_engine(engine).connect() as conn:
        rows = conn.execute(select(ts.template, ts.postback_url).where(ts.template.is_not(None)))
        sources = list(rows)
        header_sets = list(conn.execute(select(ts.postback_headers)).scalars())
        header_sets += conn.execute(select(cp.headers)).scalars()
    names: set[str] = set()
    # Credential headers' values (an access token) are masked wherever they appear.
    values: set[str] = {value for headers in header_sets for value in secret_header_values(headers)}
    for key, url in sources:
        try:
            template = catalog.traffic_source(key)
        except NotFound:  # a template since removed from the user's file
            continue
        declared = source_secrets(template, url)
        names |= declared.names
        values |= declared.values
    return DeclaredSecrets(names=frozenset(names), values=frozenset(values))


def hidden_values(engine: Engine, data_dir: Path) -> DeclaredSecrets:
    """Every secret value stored in the configuration, for pages shown to a read-only user
    (analyst), who must not see them anywhere, form fields included: the postback key, the
    declared secrets, and the credentials in the S2S targets' URLs, bodies and headers."""
    declared = log_secrets(engine, data_dir)
    ts, cp = t.traffic_sources.c, t.campaign_postbacks.c
    with reader_engine(engine).connect() as conn:
        targets = list(conn.execute(select(ts.postback_url, ts.postback_body, ts.postback_headers)))
        targets += conn.execute(select(cp.url, cp.body, cp.headers))
    values = set(declared.values)
    for url, body, headers in targets:
        for text in (url, body, *(headers or {}).values()):
            if isinstance(text, str) and text:
                values |= secret_values(text, declared)
        values |= secret_header_values(headers)
    return DeclaredSecrets(
        names=declared.names, values=frozenset(v for v in values if len(v) >= MIN_DECLARED_VALUE)
    )


def shown_entity(table_name: str, row: dict[str, Any], declared: DeclaredSecrets) -> dict[str, Any]:
    """An entity as the API and CLI show it: S2S URLs, bodies and headers masked."""
    shown = dict(row)
    if table_name == "traffic_sources":
        shown["postback_url"] = _mask(row.get("postback_url"), declared)
        shown["postback_body"] = _mask(row.get("postback_body"), declared)
        shown["postback_headers"] = mask_headers(row.get("postback_headers"), declared)
    if isinstance(row.get("postbacks"), list):
        shown["postbacks"] = [
            {
                **pb,
                "url": _mask(pb.get("url"), declared),
                "body": _mask(pb.get("body"), declared),
                "headers": mask_headers(pb.get("headers"), declared),
            }
            for pb in row["postbacks"]
        ]
    return shown


def _mask(text: Any, declared: DeclaredSecrets) -> Any:
    return mask_secrets(text, declared) if isinstance(text, str) else text
