"""HTML form fields → the keyword arguments the entity services take, and back for re-display.

Repeated rows (parameters, offers, postbacks) arrive as parallel lists (`param_name`,
`param_param`, ...); a row left blank is dropped. Validation proper stays in the services:
this module only turns text into the shapes they expect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData

from clickloop.catalog.templates import TemplateField
from clickloop.errors import InvalidInput


def _text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _list(form: FormData, name: str) -> list[str]:
    return [value.strip() if isinstance(value, str) else "" for value in form.getlist(name)]


def _optional_id(form: FormData, name: str) -> int | None:
    value = _text(form, name)
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise InvalidInput(name, "choose one from the list")
    return int(value)


def _rows(form: FormData, *names: str) -> list[dict[str, str]]:
    columns = [_list(form, name) for name in names]
    count = max((len(column) for column in columns), default=0)
    rows = []
    for index in range(count):
        row = {
            name: (column[index] if index < len(column) else "")
            for name, column in zip(names, columns, strict=True)
        }
        if any(row.values()):
            rows.append(row)
    return rows


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- campaigns ----------------------------------------------------------------------------


def campaign(form: FormData) -> dict[str, Any]:
    """Create/update arguments of a campaign, with its offers and its own S2S postbacks."""
    offers: list[tuple[int, int]] = []
    for row in _rows(form, "offer_id", "offer_weight"):
        if not row["offer_id"]:
            continue
        weight = row["offer_weight"] or "100"
        if (
            not (row["offer_id"].isascii() and row["offer_id"].isdigit())
            or not (weight.isascii() and weight.isdigit())
            or len(weight) > 6
        ):
            raise InvalidInput("offers.weight", "a whole number from 0 to 10000")
        offers.append((int(row["offer_id"]), int(weight)))
    return {
        "name": _text(form, "name"),
        "alias": _text(form, "alias"),
        "traffic_source_id": _optional_id(form, "traffic_source_id"),
        "cost_model": _text(form, "cost_model") or "none",
        "cost_value": _text(form, "cost_value") or "0",
        "status": _text(form, "status") or "active",
        "tracking_domain": _text(form, "tracking_domain") or None,
        "offers": offers,
        "postbacks": _postbacks(form),
    }


_POSTBACK_COLUMNS = ("pb_url", "pb_method", "pb_statuses", "pb_body", "pb_headers")


def _postbacks(form: FormData) -> list[dict[str, Any]]:
    rows = _rows(form, *_POSTBACK_COLUMNS)
    return [
        {
            "url": row["pb_url"],
            "method": row["pb_method"] or "GET",
            "statuses": row["pb_statuses"],
            # Body and headers ride along unseen, so that saving the form keeps a JSON target
            # (an ad platform's) as it is.
            "body": row["pb_body"] or None,
            "headers": _json_object(row["pb_headers"]),
        }
        for row in rows
        if row["pb_url"]
    ]


def _json_object(text: str) -> Any:
    """A JSON object from a form field; anything else as given, for the validator to name."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def campaign_echo(form: FormData) -> dict[str, Any]:
    """The submitted campaign form as the template shows a stored one, errors and all."""
    return {
        "name": _text(form, "name"),
        "alias": _text(form, "alias"),
        "traffic_source_id": _int_or_none(_text(form, "traffic_source_id")),
        "cost_model": _text(form, "cost_model"),
        "cost_value": _text(form, "cost_value"),
        "status": _text(form, "status"),
        "tracking_domain": _text(form, "tracking_domain") or None,
        "offers": [
            {"offer_id": _int_or_none(row["offer_id"]), "weight": row["offer_weight"]}
            for row in _rows(form, "offer_id", "offer_weight")
            if row["offer_id"]
        ],
        "postbacks": [
            {
                "url": row["pb_url"],
                "method": row["pb_method"],
                "statuses": row["pb_statuses"],
                "body": row["pb_body"],
                "headers": _json_object(row["pb_headers"]),
            }
            for row in _rows(form, *_POSTBACK_COLUMNS)
            if row["pb_url"] or row["pb_statuses"]
        ],
    }


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None


# --- traffic sources, networks, offers ----------------------------------------------------


def traffic_source(form: FormData) -> dict[str, Any]:
    return {
        "name": _text(form, "name"),
        "parameters": [
            {"name": row["param_name"], "param": row["param_param"], "macro": row["param_macro"]}
            for row in _rows(form, "param_name", "param_param", "param_macro")
        ],
        "postback_url": _text(form, "postback_url") or None,
        "postback_method": _text(form, "postback_method") or "GET",
        "postback_body": _text(form, "postback_body") or None,
        "postback_statuses": [s for s in _list(form, "postback_statuses") if s],
        "response_must_contain": _text(form, "response_must_contain") or None,
    }


def network(form: FormData) -> dict[str, Any]:
    trainings = {}
    for name in form:
        if name.startswith("training_"):
            words = [w.strip() for w in _text(form, name).split(",") if w.strip()]
            if words:
                trainings[name.removeprefix("training_")] = words
    return {
        "name": _text(form, "name"),
        "offer_params": _text(form, "offer_params"),
        "postback_params": _text(form, "postback_params"),
        "status_trainings": trainings,
        "postback_allowed_ips": _lines(_text(form, "postback_allowed_ips")),
        "notes": _text(form, "notes"),
    }


def offer(form: FormData) -> dict[str, Any]:
    return {
        "name": _text(form, "name"),
        "url": _text(form, "url"),
        "affiliate_network_id": _int_or_none(_text(form, "affiliate_network_id")),
        "currency": _text(form, "currency").upper() or "USD",
        "payout": _text(form, "payout") or "0",
        "upsell": form.get("upsell") == "on",
    }


def template_fields(form: FormData, fields: Sequence[TemplateField]) -> dict[str, str]:
    return {field.name: _text(form, f"field_{field.name}") for field in fields}


def postback_builder(
    url: str, network: Mapping[str, Any], options: Mapping[str, str]
) -> dict[str, Any]:
    """The network's postback URL, optionally with its saved trainings and a `return` answer.

    Saved trainings already apply to postbacks of this network's offers; putting them in the URL
    as well makes the URL self-contained (it keeps working for clicks of any offer).
    """
    with_trainings = options.get("trainings") == "1"
    answer = (options.get("return") or "").strip()[:40]
    extra: list[str] = []
    if with_trainings:
        trainings = sorted((network.get("status_trainings") or {}).items())
        # A template's postback parameters often carry the same trainings: the saved ones
        # (which may have been edited since) replace them rather than being added twice.
        url = _without_params(url, {f"{kind}_status" for kind, _ in trainings})
        for kind, words in trainings:
            extra.append(f"{kind}_status={quote(','.join(words), safe=',')}")
    if answer:
        url = _without_params(url, {"return"})
        extra.append(f"return={quote(answer, safe='')}")
    final = url
    if extra:
        final += ("&" if "?" in url else "?") + "&".join(extra)
    base, _, query = final.partition("?")
    parts = [part.partition("=") for part in query.split("&") if part]
    return {
        "url": final,
        "base": base,
        "parts": [(name, value) for name, _, value in parts],
        "with_trainings": with_trainings,
        "answer": answer,
    }


def _without_params(url: str, names: set[str]) -> str:
    """`url` without the query parameters named in `names` (compared in lower case)."""
    base, mark, query = url.partition("?")
    kept = [p for p in query.split("&") if p and p.partition("=")[0].lower() not in names]
    return base + (mark + "&".join(kept) if kept else "")


# --- settings -----------------------------------------------------------------------------


def settings(form: FormData) -> dict[str, Any]:
    """Settings changes from the form's text; the settings service checks the values."""
    aliases: dict[str, str] = {}
    for line in _lines(_text(form, "aliases")):
        name, sep, target = (part.strip() for part in line.partition("="))
        if not sep:
            raise InvalidInput("aliases", f"one `name=parameter` per line, not {line!r}")
        aliases[name] = target
    trainings: dict[str, list[str]] = {}
    for line in _lines(_text(form, "status_trainings")):
        kind, sep, words = (part.strip() for part in line.partition("="))
        if not sep:
            raise InvalidInput("status_trainings", f"one `type=word,word` per line, not {line!r}")
        trainings[kind] = words.split(",")
    changes = {
        "currency": _text(form, "currency"),
        "timezone": _text(form, "timezone") or "UTC",
        "aliases": aliases,
        "status_trainings": trainings,
        "allowed_networks": _lines(_text(form, "allowed_networks")),
        "ignored_answer_status": _int_or_none(_text(form, "ignored_answer_status") or "200"),
    }
    if "tracking_domains" in form:
        changes["tracking_domains"] = _lines(_text(form, "tracking_domains"))
    return changes


def settings_text(settings: Mapping[str, Any]) -> dict[str, str]:
    """Stored settings as the text the settings form edits."""
    return {
        "currency": str(settings["currency"]),
        "timezone": str(settings["timezone"]),
        "aliases": "\n".join(f"{k}={v}" for k, v in sorted(settings["aliases"].items())),
        "status_trainings": "\n".join(
            f"{k}={','.join(v)}" for k, v in sorted(settings["status_trainings"].items())
        ),
        "allowed_networks": "\n".join(settings["allowed_networks"]),
        "tracking_domains": "\n".join(settings["tracking_domains"]),
        "ignored_answer_status": str(settings["ignored_answer_status"]),
    }
