"""The template catalog: traffic sources and affiliate networks shipped as JSON, plus the user's.

Loading validates every entry and names the entry and field of the first problem
(`InvalidInput`); filling a template's fields turns it into the values an entity stores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import yaml

from clickloop.domain.secrets import DeclaredSecrets
from clickloop.errors import InvalidInput, NotFound

CATALOG_VERSION = 1
METHODS = ("GET", "POST")
BUILT_IN_TYPES = ("lead", "sale", "rejected", "registration", "deposit", "trash", "rebill")
CLICK_FIELDS = frozenset(
    {"external_id", "keyword", "cost", "creative_id", "ad_campaign_id", "source"}
    | {f"sub_id_{n}" for n in range(1, 31)}
)
POSTBACK_PARAMS = frozenset(
    {"subid", "status", "payout", "currency", "tid", "cost", "date", "return", "from"}
    | {"ignore_status", *CLICK_FIELDS}
)
_KEY = re.compile(r"[a-z0-9][a-z0-9_]*")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
# A field value lands verbatim in a URL: nothing that would end or split a query value.
_UNSAFE_VALUE = re.compile(r"[\s&#?\"'<>]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where a template came from: the page it was taken from and when that was checked, the
    name a source is known by on the web, and the catalog file or user file that holds it."""

    documentation_url: str | None
    checked_on: date | None
    domain: str | None
    catalog: str  # "Keitaro templates via Orbitra …" or the user's file name

    def describe(self) -> str:
        """One line for people: the page it came from and when it was checked, or that nobody
        checked it against the source's documentation."""
        if self.documentation_url is None:
            return f"{self.catalog}; not checked against the source's documentation"
        when = self.checked_on.isoformat() if self.checked_on else "no date given"
        return f"{self.documentation_url} (checked {when})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateField:
    """A value the user must supply before an entity made from the template is usable."""

    name: str
    label: str
    placeholder_in_url: str
    choices: tuple[str, ...] = ()
    secret: bool = False  # a credential: masked wherever the entity's requests are shown


@dataclass(frozen=True, slots=True, kw_only=True)
class ParameterRow:
    """Our click field ← the campaign link's query parameter ← the source's own macro."""

    name: str
    param: str
    macro: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficSourceTemplate:
    key: str
    name: str
    parameters: tuple[ParameterRow, ...]
    postback_url: str | None
    postback_method: str
    postback_statuses: tuple[str, ...]
    response_must_contain: str | None
    fields: tuple[TemplateField, ...]
    notes: str
    defect: str | None
    origin: str  # "builtin" or "user"
    provenance: Provenance

    @property
    def hosts(self) -> tuple[str, ...]:
        """Where the source's S2S requests go: searching "magsrv" finds ExoClick."""
        host = urlsplit(self.postback_url or "").hostname
        return (host,) if host else ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AffiliateNetworkTemplate:
    key: str
    name: str
    offer_params: str
    postback_params: str | None  # the query after /{postback_key}/postback?
    network_macros: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...]  # (name the network sends, our parameter)
    fields: tuple[TemplateField, ...]
    notes: str
    defect: str | None
    origin: str
    provenance: Provenance

    @property
    def hosts(self) -> tuple[str, ...]:
        return ()

    @property
    def status_trainings(self) -> dict[str, tuple[str, ...]]:
        """The `<type>_status` trainings of built-in types carried by the postback parameters."""
        trainings: dict[str, tuple[str, ...]] = {}
        for name, value in parse_qsl(self.postback_params or "", keep_blank_values=True):
            kind = name.removesuffix("_status")
            # Only built-in types: payment_status=... is a network value, not a custom type.
            if name.endswith("_status") and kind in BUILT_IN_TYPES:
                trainings[kind] = tuple(w.strip() for w in value.split(",") if w.strip())
        return trainings


Template = TrafficSourceTemplate | AffiliateNetworkTemplate
T = TypeVar("T", TrafficSourceTemplate, AffiliateNetworkTemplate)


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    traffic_sources: tuple[TrafficSourceTemplate, ...]
    affiliate_networks: tuple[AffiliateNetworkTemplate, ...]

    @property
    def templates(self) -> tuple[Template, ...]:
        """Every template: traffic sources, then affiliate networks, each by key."""
        return (*self.traffic_sources, *self.affiliate_networks)

    def traffic_source(self, key: str) -> TrafficSourceTemplate:
        """The traffic source template with this key."""
        for template in self.traffic_sources:
            if template.key == key:
                return template
        raise NotFound("traffic source template", key)

    def affiliate_network(self, key: str) -> AffiliateNetworkTemplate:
        """The affiliate network template with this key."""
        for template in self.affiliate_networks:
            if template.key == key:
                return template
        raise NotFound("affiliate network template", key)

    def keys(self, like: Template) -> frozenset[str]:
        """The keys of the templates of the same kind as `like`."""
        return frozenset(t.key for t in self.templates if type(t) is type(like))

    def search(self, text: str) -> tuple[Template, ...]:
        """Templates whose key, name or domain contains every word of `text`, best first.

        Case and punctuation are ignored ("Exo click" finds ExoClick, "propeller" finds
        PropellerAds, "magsrv" finds the source whose S2S goes there); an exact key or name
        ranks first, then names starting with the text, then the rest by name.
        """
        words = _fold(text).split()
        if not words:
            return ()
        query = "".join(words)
        hits: list[tuple[int, str, Template]] = []
        for template in self.templates:
            domains = " ".join(filter(None, (template.provenance.domain, *template.hosts)))
            haystack = _fold(f"{template.key} {template.name} {domains}")
            squeezed = haystack.replace(" ", "")
            if not all(w in haystack or w in squeezed for w in words):
                continue
            name = _fold(template.name).replace(" ", "")
            rank = 0 if query in (name, template.key.replace("_", "")) else 2
            if rank and name.startswith(query):
                rank = 1
            hits.append((rank, template.name.casefold(), template))
        hits.sort(key=lambda hit: (hit[0], hit[1]))
        return tuple(template for _, _, template in hits)

    def resolve(self, kind: type[T], text: str) -> T | tuple[T, ...]:
        """The template of `kind` that `text` names (its key, or the one best search hit), or
        every match when the text is ambiguous (none: an empty tuple)."""
        text = text.strip()
        exact = [t for t in self.templates if isinstance(t, kind) and t.key == text]
        if exact:
            return exact[0]
        hits = tuple(t for t in self.search(text) if isinstance(t, kind))
        squeezed = _fold(text).replace(" ", "")
        named = [t for t in hits if _fold(t.name).replace(" ", "") == squeezed]
        if len(named) == 1 or len(hits) == 1:
            return (named or list(hits))[0]
        return hits


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.casefold()).split())


def load_catalog(user_file: Path | None = None) -> Catalog:
    """The shipped catalog, extended (and overridden key by key) by the user's own file.

    The user's file (JSON, or YAML when named .yaml/.yml) is
    `{"version": 1, "traffic_sources": [...], "affiliate_networks": [...]}` with entries in the
    shipped format; a missing file counts as empty.
    """
    sources, networks = _load_builtin()
    if user_file is None or not user_file.exists():
        return Catalog(traffic_sources=sources, affiliate_networks=networks)
    user_sources, user_networks = parse_user_file(user_file)
    return Catalog(
        traffic_sources=_merge(sources, user_sources),
        affiliate_networks=_merge(networks, user_networks),
    )


def parse_user_file(
    path: Path,
) -> tuple[tuple[TrafficSourceTemplate, ...], tuple[AffiliateNetworkTemplate, ...]]:
    """A user's templates file read and validated; every error names the file, entry and field."""
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text) if yaml_file else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        kind = "YAML" if yaml_file else "JSON"
        reason = " ".join(str(exc).split())
        raise InvalidInput(str(path), f"not a readable {kind} file: {reason}") from exc
    where = path.name
    document = _require_object(document, where)
    _check_version(document, where)
    unknown = set(document) - {"version", "traffic_sources", "affiliate_networks"}
    if unknown:
        raise InvalidInput(where, f"unknown keys {sorted(unknown)}")
    catalog = f"your templates file {path.name}"
    return (
        parse_traffic_sources(
            document.get("traffic_sources", []),
            where=f"{where}: traffic_sources",
            origin="user",
            catalog=catalog,
        ),
        parse_affiliate_networks(
            document.get("affiliate_networks", []),
            where=f"{where}: affiliate_networks",
            origin="user",
            catalog=catalog,
        ),
    )


def _merge(builtin: tuple[T, ...], user: tuple[T, ...]) -> tuple[T, ...]:
    mine = {template.key: template for template in user}
    merged: list[T] = [template for template in builtin if template.key not in mine]
    merged += user
    return tuple(sorted(merged, key=lambda template: template.key))


@cache
def _load_builtin() -> tuple[
    tuple[TrafficSourceTemplate, ...], tuple[AffiliateNetworkTemplate, ...]
]:
    package = resources.files("clickloop.catalog")
    documents = {}
    for kind in ("traffic_sources", "affiliate_networks"):
        text = package.joinpath(f"{kind}.json").read_text(encoding="utf-8")
        document = _require_object(json.loads(text), f"{kind}.json")
        _check_version(document, f"{kind}.json")
        if document.get("kind") != kind:
            raise InvalidInput(f"{kind}.json: kind", f"expected {kind!r}")
        documents[kind] = document
    sources, networks = documents["traffic_sources"], documents["affiliate_networks"]
    return (
        parse_traffic_sources(
            sources.get("templates"),
            where="traffic_sources",
            origin="builtin",
            catalog=_str(sources, "source", "traffic_sources.json"),
        ),
        parse_affiliate_networks(
            networks.get("templates"),
            where="affiliate_networks",
            origin="builtin",
            catalog=_str(networks, "source", "affiliate_networks.json"),
        ),
    )


def _check_version(document: Mapping[str, Any], where: str) -> None:
    version = document.get("version")
    if version != CATALOG_VERSION:
        raise InvalidInput(
            f"{where}: version", f"unsupported version {version!r} (this clickloop reads 1)"
        )


def parse_traffic_sources(
    entries: object, *, where: str, origin: str, catalog: str
) -> tuple[TrafficSourceTemplate, ...]:
    """Validate raw traffic source entries; every error names the entry and the field."""
    templates = tuple(
        _parse_traffic_source(entry, f"{where}[{index}]", origin, catalog)
        for index, entry in enumerate(_require_list(entries, where))
    )
    _check_unique_keys(templates, where)
    return templates


def parse_affiliate_networks(
    entries: object, *, where: str, origin: str, catalog: str
) -> tuple[AffiliateNetworkTemplate, ...]:
    """Validate raw affiliate network entries; every error names the entry and the field."""
    templates = tuple(
        _parse_affiliate_network(entry, f"{where}[{index}]", origin, catalog)
        for index, entry in enumerate(_require_list(entries, where))
    )
    _check_unique_keys(templates, where)
    return templates


def _check_unique_keys(templates: Sequence[Template], where: str) -> None:
    seen: set[str] = set()
    for template in templates:
        if template.key in seen:
            raise InvalidInput(f"{where}[{template.key}]: key", "appears twice")
        seen.add(template.key)


_PROVENANCE_KEYS = frozenset({"documentation_url", "checked_on", "domain"})
_TS_KEYS = frozenset(
    {"key", "name", "parameters", "postback_url", "postback_method", "postback_statuses"}
    | {"response_must_contain", "fields", "notes", "defect"}
    | _PROVENANCE_KEYS
)
_AN_KEYS = frozenset(
    {"key", "name", "offer_params", "postback_params", "network_macros", "aliases", "fields"}
    | {"notes", "defect"}
    | _PROVENANCE_KEYS
)
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}")


def _parse_traffic_source(
    raw: object, where: str, origin: str, catalog: str
) -> TrafficSourceTemplate:
    entry = _require_object(raw, where)
    where = _entry_label(entry, where)
    _check_keys(entry, _TS_KEYS, {"key", "name"}, where)
    url = _optional_str(entry, "postback_url", where)
    if url is not None and not re.match(r"https?://[^/?#\s]+", url):
        raise InvalidInput(f"{where}: postback_url", "must be an http(s) URL with a host")
    method = entry.get("postback_method", "GET")
    if method not in METHODS:
        raise InvalidInput(f"{where}: postback_method", f"must be GET or POST, not {method!r}")
    statuses = _str_list(entry, "postback_statuses", where)
    for status in statuses:
        if not _IDENTIFIER.fullmatch(status):
            raise InvalidInput(f"{where}: postback_statuses", f"{status!r} is not a type name")
    template = TrafficSourceTemplate(
        key=_key(entry, where),
        name=_str(entry, "name", where),
        parameters=_parameters(entry, where),
        postback_url=url,
        postback_method=method,
        postback_statuses=statuses,
        response_must_contain=_optional_str(entry, "response_must_contain", where),
        fields=_fields(entry, where),
        notes=_str(entry, "notes", where, default=""),
        defect=_optional_str(entry, "defect", where),
        origin=origin,
        provenance=_provenance(entry, where, catalog),
    )
    _check_placeholders(template.fields, (url or "",), where)
    _check_no_spaces({"postback_url": url}, where)
    return template


def _parse_affiliate_network(
    raw: object, where: str, origin: str, catalog: str
) -> AffiliateNetworkTemplate:
    entry = _require_object(raw, where)
    where = _entry_label(entry, where)
    _check_keys(entry, _AN_KEYS, {"key", "name"}, where)
    offer = _str(entry, "offer_params", where, default="")
    if offer and offer[0] not in "&/?":
        raise InvalidInput(f"{where}: offer_params", "must start with &, / or ?")
    aliases = entry.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise InvalidInput(f"{where}: aliases", "must map parameter names to our names")
    for alias, target in aliases.items():
        if target not in POSTBACK_PARAMS:
            raise InvalidInput(f"{where}: aliases", f"{alias!r} maps to unknown {target!r}")
    params = _optional_str(entry, "postback_params", where)
    defect = _optional_str(entry, "defect", where)
    if params is not None:
        if params.startswith(("?", "http")) or "/postback" in params:
            raise InvalidInput(f"{where}: postback_params", "only the query after postback?")
        names = {
            aliases.get(name, name).casefold()
            for name, _ in parse_qsl(params, keep_blank_values=True)
        }
        missing = {"subid", "status"} - names
        if missing and defect is None:
            raise InvalidInput(
                f"{where}: postback_params", f"lacks {', '.join(sorted(missing))}: it is ignored"
            )
    macros = _str_list(entry, "network_macros", where)
    for macro in macros:
        if macro not in (params or ""):
            raise InvalidInput(f"{where}: network_macros", f"{macro!r} not in postback_params")
    template = AffiliateNetworkTemplate(
        key=_key(entry, where),
        name=_str(entry, "name", where),
        offer_params=offer,
        postback_params=params,
        network_macros=macros,
        aliases=tuple(sorted(aliases.items())),
        fields=_fields(entry, where),
        notes=_str(entry, "notes", where, default=""),
        defect=defect,
        origin=origin,
        provenance=_provenance(entry, where, catalog),
    )
    _check_placeholders(template.fields, (offer, params or ""), where)
    _check_no_spaces({"offer_params": offer, "postback_params": params}, where)
    return template


def _provenance(entry: Mapping[str, Any], where: str, catalog: str) -> Provenance:
    """The entry's documentation page (an http(s) URL), the ISO date it was checked and the
    source's own domain; all optional, but a checked date needs the page it checked."""
    url = _optional_str(entry, "documentation_url", where)
    if url is not None and not re.match(r"https?://[^/?#\s]+\S*$", url):
        raise InvalidInput(f"{where}: documentation_url", "must be an http(s) URL with a host")
    checked_on = entry.get("checked_on")  # YAML reads an unquoted date as a date already
    if checked_on is not None and not isinstance(checked_on, date):
        try:
            checked_on = date.fromisoformat(str(checked_on))
        except ValueError:
            raise InvalidInput(f"{where}: checked_on", "must be a date, YYYY-MM-DD") from None
    if checked_on is not None and url is None:
        raise InvalidInput(f"{where}: checked_on", "needs the documentation_url it checked")
    domain = _optional_str(entry, "domain", where)
    if domain is not None and not _DOMAIN.fullmatch(domain):
        raise InvalidInput(f"{where}: domain", "a bare host name such as example.com")
    return Provenance(documentation_url=url, checked_on=checked_on, domain=domain, catalog=catalog)


def _entry_label(entry: Mapping[str, Any], where: str) -> str:
    key = entry.get("key")
    return f"{where.rsplit('[', 1)[0]}[{key}]" if isinstance(key, str) and key else where


def _check_keys(
    entry: Mapping[str, Any], allowed: frozenset[str], required: set[str], where: str
) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise InvalidInput(f"{where}: {sorted(unknown)[0]}", "unknown field")
    for name in sorted(required - set(entry)):
        raise InvalidInput(f"{where}: {name}", "missing")


def _key(entry: Mapping[str, Any], where: str) -> str:
    key = _str(entry, "key", where)
    if not _KEY.fullmatch(key):
        raise InvalidInput(f"{where}: key", "lowercase letters, digits and _ only")
    return key


def _parameters(entry: Mapping[str, Any], where: str) -> tuple[ParameterRow, ...]:
    rows: list[ParameterRow] = []
    for index, raw in enumerate(_require_list(entry.get("parameters", []), f"{where}: parameters")):
        at = f"{where}: parameters[{index}]"
        row = _require_object(raw, at)
        _check_keys(row, frozenset({"name", "param", "macro"}), {"name", "param", "macro"}, at)
        name, param = _str(row, "name", at), _str(row, "param", at)
        if name not in CLICK_FIELDS and not _IDENTIFIER.fullmatch(name):
            raise InvalidInput(f"{at}.name", f"{name!r} is neither a click field nor a name")
        if not re.fullmatch(r"[^\s&=#?]+", param):
            raise InvalidInput(f"{at}.param", f"{param!r} is not a query parameter name")
        rows.append(ParameterRow(name=name, param=param, macro=_str(row, "macro", at, default="")))
    for attribute in ("name", "param"):
        values = [getattr(row, attribute) for row in rows]
        for value in values:
            if values.count(value) > 1:
                raise InvalidInput(f"{where}: parameters", f"{attribute} {value!r} appears twice")
    return tuple(rows)


def _fields(entry: Mapping[str, Any], where: str) -> tuple[TemplateField, ...]:
    fields: list[TemplateField] = []
    for index, raw in enumerate(_require_list(entry.get("fields", []), f"{where}: fields")):
        at = f"{where}: fields[{index}]"
        item = _require_object(raw, at)
        allowed = frozenset({"name", "label", "placeholder_in_url", "choices", "secret"})
        _check_keys(item, allowed, {"name", "label", "placeholder_in_url"}, at)
        name = _str(item, "name", at)
        if not _IDENTIFIER.fullmatch(name):
            raise InvalidInput(f"{at}.name", "lowercase letters, digits and _ only")
        secret = item.get("secret", False)
        if not isinstance(secret, bool):
            raise InvalidInput(f"{at}.secret", "must be true or false")
        fields.append(
            TemplateField(
                name=name,
                label=_str(item, "label", at),
                placeholder_in_url=_str(item, "placeholder_in_url", at),
                choices=_str_list(item, "choices", at),
                secret=secret,
            )
        )
    names = [field.name for field in fields]
    for name in names:
        if names.count(name) > 1:
            raise InvalidInput(f"{where}: fields", f"{name!r} appears twice")
    return tuple(fields)


def _check_placeholders(fields: Sequence[TemplateField], texts: Sequence[str], where: str) -> None:
    """Each placeholder is in a template text, and none hides inside another (fill order)."""
    for field in fields:
        if not any(field.placeholder_in_url in text for text in texts):
            raise InvalidInput(
                f"{where}: fields.{field.name}", f"{field.placeholder_in_url!r} is in no URL"
            )
        for other in fields:
            if other is not field and field.placeholder_in_url in other.placeholder_in_url:
                raise InvalidInput(
                    f"{where}: fields.{field.name}",
                    f"placeholder is part of {other.name}'s placeholder",
                )


def _check_no_spaces(texts: Mapping[str, str | None], where: str) -> None:
    """A space outside a macro would cut the URL short wherever it is pasted or sent."""
    for name, text in texts.items():
        if text and re.search(r"\s", re.sub(r"\{[^{}]*\}", "", text)):
            raise InvalidInput(f"{where}: {name}", "contains a space; write it as %20")


def _require_object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(where, "must be a JSON object")
    return value


def _require_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(where, "must be a JSON list")
    return value


def _str(entry: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = entry.get(name, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise InvalidInput(f"{where}: {name}", "must be a non-empty string")
    return value


def _optional_str(entry: Mapping[str, Any], name: str, where: str) -> str | None:
    value = entry.get(name)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidInput(f"{where}: {name}", "must be a non-empty string or null")
    return value


def _str_list(entry: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = entry.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{where}: {name}", "must be a list of non-empty strings")
    return tuple(value)


def fill_fields(template: T, values: Mapping[str, str]) -> T:
    """The template with every field's placeholder replaced by the user's value.

    Every field must be given, nothing else may be, and a value must be one of the field's
    choices when it has some. The result has no fields left.
    """
    where = f"template {template.key}"
    known = {field.name for field in template.fields}
    for name in values:
        if name not in known:
            raise InvalidInput(f"{where}: {name}", "the template has no such field")
    replacements: list[tuple[str, str]] = []
    for field in template.fields:
        value = values.get(field.name, "").strip()
        if not value:
            raise InvalidInput(f"{where}: {field.name}", f"required ({field.label})")
        if _UNSAFE_VALUE.search(value):
            raise InvalidInput(f"{where}: {field.name}", "no spaces, quotes, &, # or ? allowed")
        if field.choices and value not in field.choices:
            raise InvalidInput(
                f"{where}: {field.name}", f"must be one of {', '.join(field.choices)}"
            )
        replacements.append((field.placeholder_in_url, value))

    def apply(text: str | None) -> str | None:
        if text is None:
            return None
        for placeholder, value in replacements:
            text = text.replace(placeholder, value)
        return text

    if isinstance(template, TrafficSourceTemplate):
        return replace(template, postback_url=apply(template.postback_url), fields=())
    return replace(
        template,
        offer_params=apply(template.offer_params) or "",
        postback_params=apply(template.postback_params),
        fields=(),
    )


def recover_fields(
    fields: Sequence[TemplateField], template_texts: Sequence[str], texts: Sequence[str]
) -> dict[str, str]:
    """Field values read back from an entity's texts, made from the template texts in order.

    First each whole template text is matched as a pattern (its placeholders the values, its
    macros anything): that finds path segments too (`/conversion/HASH/`). Fields still unknown
    are found by the literal text between the placeholder and the `?`, `&` or `/` before it in
    the template (`goal=` in `?goal=YOUR_ID&`); those without such text must be given.
    """
    recovered: dict[str, str] = {}
    for template_text, text in zip(template_texts, texts, strict=True):
        recovered |= _match_template(fields, template_text, text)
    for field in fields:
        if field.name in recovered:
            continue
        for template_text in template_texts:
            if field.placeholder_in_url not in template_text:
                continue
            before = template_text.split(field.placeholder_in_url, 1)[0]
            prefix = re.split(r"(?=[?&/])", before)[-1]
            if len(prefix) < 2:
                continue
            for text in texts:
                found = re.search(re.escape(prefix) + r"([^&#?/]+)", text)
                if found:
                    recovered[field.name] = found.group(1)
                    break
    return recovered


def _match_template(
    fields: Sequence[TemplateField], template_text: str, text: str
) -> dict[str, str]:
    """The fields' values where `text` is `template_text` filled in (its macros rendered or not)."""
    pieces: list[str] = []
    groups: dict[str, str] = {}
    position = 0
    token = re.compile(
        "|".join(
            [re.escape(f.placeholder_in_url) for f in sorted(fields, key=_placeholder_length)]
            + [r"\{[^{}]*\}"]
        )
    )
    for found in token.finditer(template_text):
        pieces.append(re.escape(template_text[position : found.start()]))
        field = next((f for f in fields if f.placeholder_in_url == found[0]), None)
        if field is None:
            pieces.append(".*?")
        elif field.name in groups.values():
            pieces.append(r"[^/?&#]+")
        else:
            group = f"f{len(groups)}"
            groups[group] = field.name
            pieces.append(rf"(?P<{group}>[^/?&#]+)")
        position = found.end()
    pieces.append(re.escape(template_text[position:]))
    matched = re.fullmatch("".join(pieces), text) if groups else None
    if matched is None:
        return {}
    return {name: matched[group] for group, name in groups.items()}


def _placeholder_length(field: TemplateField) -> int:
    return -len(field.placeholder_in_url)  # the longest first: none hides inside another


_MACRO_NAME = re.compile(r"\{([a-z][a-z0-9_]*)(?::[^{}]*)?\}")


def uncaptured_click_fields(captured: Iterable[str], *texts: str | None) -> tuple[str, ...]:
    """The click fields an S2S request sends back (`{external_id}`) that no parameter row of
    the source captures (`captured`: the rows' field names): they render empty, so the source
    would never recognise its click. In order of appearance, each once."""
    rows = set(captured)
    found: list[str] = []
    for text in texts:
        for name in _MACRO_NAME.findall(text or ""):
            if name in CLICK_FIELDS and name not in rows and name not in found:
                found.append(name)
    return tuple(found)


def source_secrets(template: TrafficSourceTemplate, postback_url: str | None) -> DeclaredSecrets:
    """What a traffic source made from `template` keeps secret: the parameter names its secret
    fields fill (`t=YOUR_TOKEN` declares `t`), and their values read back from `postback_url`."""
    secret_fields = [field for field in template.fields if field.secret]
    if not secret_fields or template.postback_url is None:
        return DeclaredSecrets()
    names: set[str] = set()
    for field in secret_fields:
        for before in template.postback_url.split(field.placeholder_in_url)[:-1]:
            named = re.search(r"[?&]([^?&=#/]+)=$", before)
            if named:
                names.add(named.group(1))
    values = recover_fields(template.fields, (template.postback_url,), (postback_url or "",))
    return DeclaredSecrets(
        names=frozenset(names),
        values=frozenset(values[f.name] for f in secret_fields if f.name in values),
    )
