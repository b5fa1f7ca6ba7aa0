"""The admin REST API under /api/v1: JSON, bearer-token auth, errors as {code, message, field}.

Every route is a thin adapter over a service function; the OpenAPI document that describes the
routes is built from the same table (`http/openapi.py`) and served at /api/v1/openapi.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clickloop.domain.deliveries import DeliveryState
from clickloop.domain.postbacks import Outcome
from clickloop.domain.secrets import MASK, DeclaredSecrets
from clickloop.errors import (
    ClickloopError,
    Conflict,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from clickloop.http import params
from clickloop.http.csvexport import CONVERSION_CSV_COLUMNS, REPORT_CSV_COLUMNS, csv_rows
from clickloop.http.openapi import build_openapi, check_body
from clickloop.services import (
    adplatforms,
    campaigns,
    deliveries,
    entities,
    exports,
    masking,
    postbacks,
    queries,
    report_builder,
    report_query,
    reports,
    saved_reports,
    tokens,
    users,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
BODY_SCHEMA = "clickloop.body_schema"  # the scope key where _guard leaves the body's schema
ACTOR = "clickloop.actor"  # the scope key where _guard leaves who is asking (for the log)
TOKEN_ID = "clickloop.token_id"  # the scope key where _guard leaves the caller's token id
ROLE = "clickloop.role"  # the scope key where _guard leaves the token's role
# Operations that read although their method is not GET: an analyst's token may call them.
READS_BY_POST = frozenset({("POST", "/reports/build")})
READ_ONLY = (
    "this token is read-only (analyst): it reads reports and logs but changes nothing; "
    "use an admin's token for this request"
)
ENTITY_TABLES = {
    "traffic-sources": "traffic_sources",
    "affiliate-networks": "affiliate_networks",
    "offers": "offers",
    "campaigns": "campaigns",
}
CREATORS: dict[str, Callable[..., int]] = {
    "traffic_sources": entities.create_traffic_source,
    "affiliate_networks": entities.create_affiliate_network,
    "offers": entities.create_offer,
    "campaigns": entities.create_campaign,
}
Handler = Callable[[Request], Awaitable[Response]]


class ApiError(ClickloopError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _dumps(value: Any) -> bytes:
    # Row keys are str subclasses (quoted_name), which orjson only takes with OPT_NON_STR_KEYS.
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _dumps(content)


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return Json(body, status_code=status)


def _guard(
    engine: Engine, handler: Handler, operation: dict[str, Any], *, changes: bool
) -> Handler:
    """Token auth, a read-only (analyst) token refused where the operation `changes` anything,
    the operation's query parameters checked, and the one place errors become responses. The
    operation (from the OpenAPI document) also gives `_json_body` its schema."""
    known = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})

    async def guarded(request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "unauthorized", "send Authorization: Bearer <token>")
        try:
            valid = await asyncio.to_thread(
                tokens.verify_token, engine, token.strip(), now=datetime.now(UTC)
            )
            if valid is None:
                return _error(401, "unauthorized", "unknown or revoked token")
            if changes and not valid.can_change:
                log.warning(
                    "API %s %s refused: token %d is read-only",
                    request.method,
                    request.url.path,
                    valid.id,
                )
                return _error(403, "read_only", READ_ONLY)
            request.scope[ACTOR] = f"API token {valid.id}"
            request.scope[ROLE] = valid.role
            # Refused up front: PostgreSQL text cannot hold NUL, and a CSV export would meet
            # the error only after its answer had started.
            params.refuse_nul(request.query_params.multi_items())
            params.refuse_unknown(request.query_params.keys(), known)
            request.scope[BODY_SCHEMA] = body.get("schema", {})
            request.scope[TOKEN_ID] = valid.id
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except InvalidInput as exc:
            return _error(422, "invalid", exc.reason, exc.field)
        except NotFound as exc:
            return _error(404, "not_found", str(exc))
        except Conflict as exc:
            return _error(409, "conflict", str(exc))
        except DataError:  # a value the checks above let through but the database refuses
            log.warning(
                "API %s %s: value refused by the database", request.method, request.url.path
            )
            return _error(422, "invalid", "a value the database cannot store")
        except (StorageUnavailable, SQLAlchemyError) as exc:
            log.warning("API %s %s: storage error: %s", request.method, request.url.path, exc)
            response = _error(503, "unavailable", "storage unavailable, retry later")
            response.headers["retry-after"] = "5"
            return response

    return guarded


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "request body over 1 MiB")
    try:
        # Numbers with a fraction become Decimal, so money never passes through a float.
        value = json.loads(body or b"null", parse_float=Decimal, parse_constant=_refuse)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ApiError(400, "bad_json", f"the body is not valid JSON ({where})") from exc
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_json", "the body is not UTF-8 text") from exc
    except RecursionError as exc:
        raise ApiError(400, "bad_json", "the body nests too deeply") from exc
    except ValueError as exc:  # NaN or Infinity (from _refuse)
        raise ApiError(400, "bad_json", "the body is not valid JSON (NaN or Infinity)") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    check_body(request.scope[BODY_SCHEMA], value)
    return value


async def _rerender_option(request: Request) -> bool:
    """A resend's optional body: `{"rerender": true}` renders the request again."""
    if not (await request.body()).strip():
        return False
    options = await _json_body(request)
    for name in options:
        if name != "rerender":
            raise InvalidInput(name, "not an option; the body may hold only rerender")
    rerender = options.get("rerender", False)
    if not isinstance(rerender, bool):
        raise InvalidInput("rerender", "true or false")
    return rerender


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _path_id(request: Request) -> int:
    value = int(request.path_params["id"])
    if not 0 < value <= queries.MAX_ID:
        raise NotFound("id", value)
    return value


def _page(request: Request) -> tuple[int, str | None]:
    limit = params.whole_number(request.query_params, "limit")
    return queries.DEFAULT_LIMIT if limit is None else limit, params.cursor(request.query_params)


def _page_body(page: queries.Page) -> dict[str, Any]:
    return {"items": page.items, "next_cursor": page.next_cursor}


def create_api(
    engine: Engine,
    *,
    base_url: str,
    data_dir: Path,
    on_change: Callable[[], Awaitable[None]],
    report_timeout: float = 60,
) -> Starlette:
    """The API as a Starlette app; mount it at /api/v1. A report's statements stop after
    `report_timeout` seconds (0: no limit)."""

    def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return asyncio.to_thread(function, *args, **kwargs)

    def declared() -> Awaitable[DeclaredSecrets]:
        return run(masking.declared_secrets, engine, data_dir)

    async def shown(table_name: str, entity_id: int) -> dict[str, Any]:
        row = await run(entities.get_entity, engine, table_name, entity_id)
        shown_row = masking.shown_entity(table_name, row, await declared())
        if table_name == "campaigns":
            shown_row["link"] = await run(campaigns.link_of, engine, row, default_base=base_url)
        return shown_row

    async def list_entities(request: Request) -> Response:
        table_name = ENTITY_TABLES[request.url.path.rstrip("/").rsplit("/", 1)[-1]]
        rows = await run(entities.list_rows, engine, table_name)
        secrets = await declared()
        items = [masking.shown_entity(table_name, row, secrets) for row in rows]
        if table_name == "campaigns":
            links = await run(campaigns.links_by_id, engine, default_base=base_url)
            for item in items:
                item["link"] = links[item["id"]]
        return Json({"items": items})

    async def campaign_stats(request: Request) -> Response:
        query = request.query_params
        sort = params.choice(query, "sort", campaigns.SORTS) or "clicks"
        order = params.choice(query, "order", ("asc", "desc"))
        board = await run(
            campaigns.campaign_board,
            engine,
            default_base=base_url,
            now=datetime.now(UTC),
            period=params.choice(query, "period", campaigns.PERIODS),
            date_from=params.day(query, "from"),
            date_to=params.day(query, "to"),
            search=params.text(query, "search") or "",
            traffic_source_id=params.whole_number(query, "traffic_source_id"),
            network_id=params.whole_number(query, "network_id"),
            state=params.choice(query, "state", campaigns.STATES),
            sort=sort,
            descending=(order or ("asc" if sort in campaigns.WORD_SORTS else "desc")) == "desc",
            statement_timeout=report_timeout,
        )
        return Json(board.as_dict())

    async def campaigns_status(request: Request) -> Response:
        body = await _json_body(request)
        changed = await run(campaigns.set_status, engine, body["ids"], body["status"])
        await on_change()
        return Json({"changed": changed})

    async def clone_campaign(request: Request) -> Response:
        body = await _json_body(request) if (await request.body()).strip() else {}
        new_id = await run(
            campaigns.clone,
            engine,
            _path_id(request),
            now=datetime.now(UTC),
            name=body.get("name"),
            alias=body.get("alias"),
        )
        await on_change()
        return Json(await shown("campaigns", new_id), status_code=201)

    async def archive_campaign(request: Request) -> Response:
        campaign_id = _path_id(request)
        if request.url.path.endswith("/archive"):
            await run(campaigns.archive, engine, [campaign_id], now=datetime.now(UTC))
        else:
            await run(campaigns.restore, engine, [campaign_id])
        await on_change()
        return Json(await shown("campaigns", campaign_id))

    async def create_entity(request: Request) -> Response:
        table_name = ENTITY_TABLES[request.url.path.rstrip("/").rsplit("/", 1)[-1]]
        # The body's schema names every field a creator takes, and its required ones.
        fields = await _json_body(request)
        if table_name == "campaigns" and "offers" in fields:
            fields["offers"] = entities.offer_pairs(fields["offers"])
        new_id = await run(CREATORS[table_name], engine, now=datetime.now(UTC), **fields)
        await on_change()
        return Json(await shown(table_name, new_id), status_code=201)

    async def get_entity(request: Request) -> Response:
        table_name = ENTITY_TABLES[request.url.path.split("/")[-2]]
        return Json(await shown(table_name, _path_id(request)))

    async def patch_entity(request: Request) -> Response:
        table_name = ENTITY_TABLES[request.url.path.split("/")[-2]]
        entity_id = _path_id(request)
        changes = await _json_body(request)
        await run(
            entities.update_entity, engine, table_name, entity_id, changes, now=datetime.now(UTC)
        )
        await on_change()
        return Json(await shown(table_name, entity_id))

    async def get_settings(request: Request) -> Response:
        public = _public_settings(await run(entities.get_settings, engine), base_url)
        if request.scope[ROLE] != users.ADMIN:
            # A read-only token sees the postback URL's shape, not its key.
            key = public["postback_key"]
            public["postback_key"] = MASK
            public["postback_url"] = public["postback_url"].replace(key, MASK)
        return Json(public)

    async def patch_settings(request: Request) -> Response:
        changes = await _json_body(request)
        if "postback_key" in changes:
            raise InvalidInput("postback_key", "rotate it with POST /settings/postback-key/rotate")
        settings = await run(entities.update_settings, engine, changes, actor=request.scope[ACTOR])
        await on_change()
        return Json(_public_settings(settings, base_url))

    async def rotate_key(request: Request) -> Response:
        await run(entities.rotate_postback_key, engine, actor=request.scope[ACTOR])
        await on_change()
        return Json(_public_settings(await run(entities.get_settings, engine), base_url))

    async def list_types(request: Request) -> Response:
        return Json({"items": await run(postbacks.list_conversion_types, engine)})

    async def create_type(request: Request) -> Response:
        body = await _json_body(request)
        name, label = body["name"], body.get("label", "")
        created = await run(
            postbacks.add_conversion_type, engine, name, label=label, now=datetime.now(UTC)
        )
        await on_change()
        return Json({"name": created}, status_code=201)

    async def list_clicks(request: Request) -> Response:
        limit, cursor = _page(request)
        campaign_id = params.whole_number(request.query_params, "campaign_id")
        page = await run(
            queries.list_clicks, engine, campaign_id=campaign_id, limit=limit, cursor=cursor
        )
        return Json(_page_body(page))

    async def get_click(request: Request) -> Response:
        return Json(await run(queries.get_click, engine, request.path_params["subid"][:64]))

    def conversion_filters(request: Request) -> dict[str, Any]:
        query = request.query_params
        return {
            "campaign_id": params.whole_number(query, "campaign_id"),
            "type": params.text(query, "type", max_length=64),
            "subid": params.text(query, "subid", max_length=64),
            "since": params.moment(query, "since"),
            "until": params.moment(query, "until"),
        }

    async def list_conversions(request: Request) -> Response:
        limit, cursor = _page(request)
        page = await run(
            queries.list_conversions,
            engine,
            limit=limit,
            cursor=cursor,
            **conversion_filters(request),
        )
        return Json(_page_body(page))

    async def export_conversions(request: Request) -> Response:
        filters = conversion_filters(request)
        return StreamingResponse(
            csv_rows(queries.iter_conversions(engine, **filters), CONVERSION_CSV_COLUMNS),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="conversions.csv"'},
        )

    async def get_conversion(request: Request) -> Response:
        return Json(await run(queries.get_conversion, engine, _path_id(request)))

    async def change_status(request: Request) -> Response:
        conversion_id = _path_id(request)
        status = (await _json_body(request))["status"]
        user = f"api-token:{request.scope[TOKEN_ID]}"
        now = datetime.now(UTC)
        result = await run(
            postbacks.change_status, engine, conversion_id, status, user=user, now=now
        )
        if result.outcome == Outcome.IGNORED:  # logged, but the conversion is as it was
            raise ApiError(409, "conflict", f"status not changed: {result.reason}")
        return Json(
            {
                "outcome": str(result.outcome),
                "log_id": result.log_id,
                "conversion": await run(queries.get_conversion, engine, conversion_id),
            }
        )

    async def list_received(request: Request) -> Response:
        limit, cursor = _page(request)
        page = await run(
            queries.list_received_postbacks,
            engine,
            limit=limit,
            cursor=cursor,
            **params.received_filters(request.query_params),
        )
        return Json(_page_body(page))

    async def reprocess(request: Request) -> Response:
        result = await run(postbacks.reprocess, engine, _path_id(request), now=datetime.now(UTC))
        return Json(
            {
                "outcome": str(result.outcome),
                "reason": result.reason,
                "log_id": result.log_id,
                "conversion_id": result.conversion_id,
            }
        )

    async def list_deliveries(request: Request) -> Response:
        limit, cursor = _page(request)
        query = request.query_params
        page = await run(
            queries.list_deliveries,
            engine,
            state=params.choice(query, "state", [str(s) for s in DeliveryState]),
            conversion_id=params.whole_number(query, "conversion_id"),
            subid=params.text(query, "subid", max_length=64),
            limit=limit,
            cursor=cursor,
        )
        secrets = await declared()
        items = [queries.shown_delivery(row, secrets) for row in page.items]
        return Json({"items": items, "next_cursor": page.next_cursor})

    async def get_delivery(request: Request) -> Response:
        delivery = await run(queries.get_delivery, engine, _path_id(request))
        return Json(queries.shown_delivery(delivery, await declared()))

    async def resend(request: Request) -> Response:
        delivery_id = _path_id(request)
        rerender = await _rerender_option(request)
        resent = await run(
            deliveries.resend, engine, [delivery_id], now=datetime.now(UTC), rerender=rerender
        )
        if delivery_id in resent.skipped:
            reason = resent.skipped[delivery_id]
            if reason == deliveries.NOT_RESENDABLE:
                raise NotFound("delivery (or it is being sent right now)", delivery_id)
            raise ApiError(409, "conflict", f"delivery {delivery_id} was not queued: {reason}")
        return Json({"queued": 1, "delivery_ids": [resent.queued[delivery_id]]})

    async def resend_failed(request: Request) -> Response:
        rerender = await _rerender_option(request)
        count = await run(
            deliveries.resend_failed, engine, now=datetime.now(UTC), rerender=rerender
        )
        return Json({"queued": count})

    async def report(request: Request) -> Response:
        query = request.query_params
        settings = await run(entities.get_settings, engine)
        timezone = params.text(query, "timezone", max_length=64) or settings["timezone"]
        today = datetime.now(report_query.zone_named(timezone, "timezone")).date()
        # The same default range as the builder, the report page and the campaign list.
        first, last = report_query.preset_range(report_query.DEFAULT_PRESET, today)
        as_csv = params.choice(query, "format", ("json", "csv")) == "csv"
        built = await run(
            reports.build_report,
            engine,
            group_by=params.choice(query, "group_by", reports.GROUPS) or "day",
            date_from=params.day(query, "from") or first,
            date_to=params.day(query, "to") or last,
            timezone=timezone,
            currency=settings["currency"],
            campaign_id=params.whole_number(query, "campaign_id"),
            statement_timeout=report_timeout,
        )
        rows = [row.as_dict() for row in built.rows]
        if as_csv:
            return StreamingResponse(
                csv_rows(iter([*rows, built.totals.as_dict()]), REPORT_CSV_COLUMNS),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": 'attachment; filename="report.csv"'},
            )
        return Json(
            {
                "group_by": built.group_by,
                "from": built.date_from,
                "to": built.date_to,
                "timezone": built.timezone,
                "currency": built.currency,
                "rows": rows,
                "totals": built.totals.as_dict(),
                "source": built.source,
                "total_rows": built.total_rows,
                "truncated": built.truncated,
            }
        )

    async def add_ad_platform_postback(request: Request) -> Response:
        campaign_id = _path_id(request)
        fields = await _json_body(request)
        now = datetime.now(UTC)
        await run(adplatforms.add_campaign_postback, engine, campaign_id, fields, now=now)
        await on_change()
        return Json(await shown("campaigns", campaign_id), status_code=201)

    async def set_ad_platform_postback(request: Request) -> Response:
        source_id = _path_id(request)
        fields = await _json_body(request)
        now = datetime.now(UTC)
        await run(adplatforms.set_source_postback, engine, source_id, fields, now=now)
        await on_change()
        return Json(await shown("traffic_sources", source_id))

    async def export_google_ads(request: Request) -> Response:
        query = request.query_params
        settings = await run(entities.get_settings, engine)
        export = exports.google_ads_export(
            conversion_name=params.text(query, "conversion_name", max_length=100),
            date_from=params.day(query, "from"),
            date_to=params.day(query, "to"),
            statuses=params.text(query, "statuses"),
            campaign_id=params.whole_number(query, "campaign_id"),
            timezone=settings["timezone"],
            today=datetime.now(ZoneInfo(settings["timezone"])).date(),
        )
        return StreamingResponse(
            csv_rows(exports.google_ads_rows(engine, export), exports.GOOGLE_ADS_COLUMNS),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="google-ads-conversions.csv"'},
        )

    async def build_report(request: Request) -> Response:
        body = await _json_body(request) if (await request.body()).strip() else {}
        settings = await run(entities.get_settings, engine)
        types = await run(postbacks.list_conversion_types, engine)
        query = report_query.parse_query(
            body,
            now=datetime.now(UTC),
            default_timezone=settings["timezone"],
            conversion_types=report_query.known_types(row["name"] for row in types),
        )
        result = await run(
            report_builder.run_report,
            engine,
            query,
            settings=settings,
            statement_timeout=report_timeout,
        )
        if params.choice(request.query_params, "format", ("json", "csv")) == "csv":
            columns, records = result.table()
            return StreamingResponse(
                csv_rows(iter(records), columns),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": 'attachment; filename="report.csv"'},
            )
        return Json(result.as_dict())

    async def list_saved(request: Request) -> Response:
        return Json({"items": await run(saved_reports.list_saved, engine)})

    async def create_saved(request: Request) -> Response:
        body = await _json_body(request)
        saved = await run(
            saved_reports.create_saved,
            engine,
            name=body["name"],
            query=body["query"],
            now=datetime.now(UTC),
        )
        return Json(saved, status_code=201)

    async def patch_saved(request: Request) -> Response:
        changes = await _json_body(request)
        saved = await run(
            saved_reports.update_saved,
            engine,
            _path_id(request),
            changes,
            now=datetime.now(UTC),
        )
        return Json(saved)

    async def delete_saved(request: Request) -> Response:
        await run(saved_reports.delete_saved, engine, _path_id(request))
        return Response(status_code=204)

    routes: list[tuple[str, Handler, list[str]]] = []
    for path in ENTITY_TABLES:
        routes.append((f"/{path}", list_entities, ["GET"]))
        routes.append((f"/{path}", create_entity, ["POST"]))
        routes.append((f"/{path}/{{id:int}}", get_entity, ["GET"]))
        routes.append((f"/{path}/{{id:int}}", patch_entity, ["PATCH"]))
    routes += [
        ("/settings", get_settings, ["GET"]),
        ("/settings", patch_settings, ["PATCH"]),
        ("/settings/postback-key/rotate", rotate_key, ["POST"]),
        ("/conversion-types", list_types, ["GET"]),
        ("/conversion-types", create_type, ["POST"]),
        ("/clicks", list_clicks, ["GET"]),
        ("/clicks/{subid}", get_click, ["GET"]),
        ("/conversions", list_conversions, ["GET"]),
        ("/conversions.csv", export_conversions, ["GET"]),
        ("/conversions/{id:int}", get_conversion, ["GET"]),
        ("/conversions/{id:int}/status", change_status, ["POST"]),
        ("/received-postbacks", list_received, ["GET"]),
        ("/received-postbacks/{id:int}/reprocess", reprocess, ["POST"]),
        ("/deliveries", list_deliveries, ["GET"]),
        ("/deliveries/resend-failed", resend_failed, ["POST"]),
        ("/deliveries/{id:int}", get_delivery, ["GET"]),
        ("/deliveries/{id:int}/resend", resend, ["POST"]),
        ("/reports", report, ["GET"]),
        ("/campaigns/stats", campaign_stats, ["GET"]),
        ("/campaigns/status", campaigns_status, ["POST"]),
        ("/campaigns/{id:int}/clone", clone_campaign, ["POST"]),
        ("/campaigns/{id:int}/archive", archive_campaign, ["POST"]),
        ("/campaigns/{id:int}/restore", archive_campaign, ["POST"]),
        ("/campaigns/{id:int}/ad-platform-postbacks", add_ad_platform_postback, ["POST"]),
        ("/traffic-sources/{id:int}/ad-platform-postback", set_ad_platform_postback, ["PUT"]),
        ("/exports/google-ads", export_google_ads, ["GET"]),
        ("/reports/build", build_report, ["POST"]),
        ("/saved-reports", list_saved, ["GET"]),
        ("/saved-reports", create_saved, ["POST"]),
        ("/saved-reports/{id:int}", patch_saved, ["PATCH"]),
        ("/saved-reports/{id:int}", delete_saved, ["DELETE"]),
    ]
    document = build_openapi(base_url)

    async def openapi(request: Request) -> Response:
        return Json(document)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not_found", "no such API route")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        response = _error(405, "method_not_allowed", "method not allowed on this route")
        headers = getattr(exc, "headers", None) or {}
        response.headers["allow"] = headers.get("Allow", "")
        return response

    # One route per path, whatever its methods, so that a 405 lists every method of the path.
    by_path: dict[str, dict[str, Handler]] = {}
    for path, handler, methods in routes:
        spec = document["paths"][re.sub(r"{(\w+):\w+}", r"{\1}", path)]
        for method in methods:
            changes = method != "GET" and (method, path) not in READS_BY_POST
            by_path.setdefault(path, {})[method] = _guard(
                engine, handler, spec[method.lower()], changes=changes
            )
    return Starlette(
        routes=[Route("/openapi.json", openapi, methods=["GET"])]
        + [
            Route(path, _by_method(handlers), methods=list(handlers))
            for path, handlers in by_path.items()
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )


def _by_method(handlers: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return dispatch


def _public_settings(settings: dict[str, Any], base_url: str) -> dict[str, Any]:
    public = {k: v for k, v in settings.items() if k != "config_version"}
    public["postback_url"] = f"{base_url}/{settings['postback_key']}/postback"
    return public
