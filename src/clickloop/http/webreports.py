"""The report page: its state is one report builder query (the body of
POST /api/v1/reports/build) carried in the URL as `q`, so every link (sort, drill-down, page,
removing a filter) and the CSV are that query changed or repeated; and saved reports.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from clickloop.errors import Conflict, InvalidInput
from clickloop.http import params
from clickloop.http.csvexport import csv_rows
from clickloop.http.webcore import Web, bar_chart, names_by_id, session_of, zones
from clickloop.services import entities, postbacks, report_builder, report_query, saved_reports
from clickloop.services.report_query import (
    DIMENSION_OPERATORS,
    DIMENSIONS,
    ENTITY_DIMENSIONS,
    LIST_OPERATORS,
    METRIC_OPERATORS,
    METRICS,
    PRESETS,
    TIME_DIMENSIONS,
)

LIMITS = (25, 50, 100, 500)
# Column headings where the metric's name is an abbreviation.
HEADINGS = {
    "cr": "CR %",
    "roi": "ROI %",
    "projected_roi": "projected ROI %",
    "epc": "EPC",
    "cpc": "CPC",
    "cpa": "CPA",
}
DEFAULT_QUERY: dict[str, Any] = {"range": {"preset": "last_7_days"}, "grouping": ["day"]}
# What a row's drill-down groups by next when the form does not say.
DRILL_ORDER = ("campaign", "offer", "traffic_source", "country", "device_type", "os", "day")
# The old page's filters (group_by, from, to, timezone, campaign_id): still answered, so
# bookmarks and CSV links made before keep working.
LEGACY = ("group_by", "from", "to", "timezone", "campaign_id")


def state_url(query: dict[str, Any], **extra: str) -> str:
    """The page's URL for `query` (compact JSON, so links stay short)."""
    return "?" + urlencode({"q": json.dumps(query, separators=(",", ":")), **extra})


def changed(query: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """`query` with `fields` replaced (None removes one); the page starts again at row 1."""
    new = {k: v for k, v in query.items() if k != "offset"}
    for key, value in fields.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    return new


def query_of(params_: QueryParams) -> dict[str, Any]:
    """The query in `q`, else the default one; InvalidInput("q") when it is not an object."""
    text = params_.get("q")
    if not text:
        return dict(DEFAULT_QUERY)
    try:
        query = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise InvalidInput("q", "a report builder query as JSON") from exc
    if not isinstance(query, dict):
        raise InvalidInput("q", "a report builder query as JSON")
    return query


def legacy_query(params_: QueryParams) -> dict[str, Any]:
    """The query the old page's filters meant (group_by, from, to, timezone, campaign_id)."""
    group_by = params.choice(params_, "group_by", DIMENSIONS) or "day"
    span: dict[str, Any] = {"preset": "last_7_days"}
    date_from, date_to = params.day(params_, "from"), params.day(params_, "to")
    if date_from or date_to:
        span = {"from": str(date_from or date_to), "to": str(date_to or date_from)}
    timezone = params.text(params_, "timezone", max_length=64)
    if timezone:
        span["timezone"] = timezone
    query: dict[str, Any] = {"range": span, "grouping": [group_by]}
    campaign_id = params.whole_number(params_, "campaign_id")
    if campaign_id is not None:
        query["filters"] = [{"name": "campaign", "operator": "equals", "value": str(campaign_id)}]
    return query


def form_query(
    base: dict[str, Any], form: QueryParams, names: dict[str, dict[int, str]]
) -> dict[str, Any]:
    """The page form applied to the current query: range, grouping, columns, attribution,
    comparison, page size, and a new filter when one is given (`names`: entity names by id)."""
    query = changed(base)
    preset = form.get("preset", "")
    if preset in PRESETS:
        span: dict[str, Any] = {"preset": preset}
    else:
        span = {k: v for k in ("from", "to") if (v := form.get(k, "").strip())}
    if zone := form.get("timezone", "").strip():
        span["timezone"] = zone
    query["range"] = span
    grouping = [g for g in form.getlist("g") if g]
    query["grouping"] = list(dict.fromkeys(grouping))
    if metrics := form.getlist("m"):
        query["metrics"] = metrics
    query["attribution"] = form.get("attribution") or "conversion_time"
    query["compare"] = form.get("compare") == "1"
    if limit := form.get("limit"):
        query["limit"] = int(limit) if limit.isdigit() else limit
    # A sort on a dimension no longer grouped is dropped (the builder refuses it).
    grouped = set(query["grouping"])
    sort = [s for s in base.get("sort", []) if s.get("name") not in set(DIMENSIONS) - grouped]
    query.pop("sort", None)
    if sort:
        query["sort"] = sort
    name, operator = form.get("fname", ""), form.get("fop", "")
    if name:
        item: dict[str, Any] = {"name": name, "operator": operator}
        text = form.get("fvalue", "").strip()
        # Campaigns, sources, offers and networks may be typed by name: the builder takes ids.
        by_name = {label.casefold(): str(id_) for id_, label in names.get(name, {}).items()}
        values = [v.strip() for v in text.split(",") if v.strip()]
        values = [by_name.get(v.casefold(), v) for v in values]
        if operator in (*LIST_OPERATORS, "between"):
            item["values"] = values
        elif operator != "is_empty":
            item["value"] = by_name.get(text.casefold(), text)
        query["filters"] = [*base.get("filters", []), item]
    return query


def sort_link(query: dict[str, Any], name: str, **keep: str) -> tuple[str, str]:
    """The link that sorts by `name` (again: the other way) and the arrow now shown."""
    current = (query.get("sort") or [{}])[0]
    if current.get("name") == name:
        order = "asc" if current.get("order", "asc") == "desc" else "desc"
        arrow = " ↓" if current.get("order", "asc") == "desc" else " ↑"
    else:
        order = "asc" if name in DIMENSIONS else "desc"
        arrow = ""
    return state_url(changed(query, sort=[{"name": name, "order": order}]), **keep), arrow


def drill_link(
    query: dict[str, Any], dimensions: dict[str, str], then: str, shown: tuple[date, date]
) -> str:
    """A row's drill-down: filter by each of its grouped values, then group by `then` too.
    Time buckets cannot be filtered on: a day, week or month narrows the range instead (within
    the `shown` one), an hour narrows it to its day and filters by hour of day."""
    filters = list(query.get("filters", []))
    span = dict(query.get("range", {}))
    for name, value in dimensions.items():
        if name in TIME_DIMENSIONS:
            first, last = _bucket(name, value)
            span = {
                "from": max(first, shown[0]).isoformat(),
                "to": min(last, shown[1]).isoformat(),
                **({"timezone": span["timezone"]} if "timezone" in span else {}),
            }
            if name == "hour":
                filters.append(
                    {
                        "name": "hour_of_day",
                        "operator": "equals",
                        "value": value[11:13].lstrip("0") or "0",
                    }
                )
        elif value == "":
            filters.append({"name": name, "operator": "is_empty"})
        else:
            filters.append({"name": name, "operator": "equals", "value": value})
    grouping = list(query.get("grouping", []))
    if then not in grouping and len(grouping) < 3:
        grouping.append(then)
    new = changed(query, range=span, filters=filters or None, grouping=grouping, sort=None)
    return state_url(new, then=then)


def _bucket(name: str, value: str) -> tuple[date, date]:
    """The local days of a time bucket as the builder shows it (day, week start, YYYY-MM, hour)."""
    if name == "month":
        first = date.fromisoformat(value + "-01")
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first, following - timedelta(days=1)
    first = date.fromisoformat(value[:10])
    return first, first + timedelta(days=6 if name == "week" else 0)


def cell(value: Any) -> str:
    """A metric as the table shows it: the exact value, without the trailing zeros of the
    micro-units beyond two decimals (1.500000 -> 1.50, 0.123400 -> 0.1234)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = f"{value:f}"
        if "." in text:
            whole, fraction = text.split(".")
            fraction = fraction.rstrip("0").ljust(2, "0")
            return f"{whole}.{fraction}"
    return str(value)


def next_level(grouping: list[str], asked: str | None) -> str:
    if asked in DIMENSIONS and asked not in grouping:
        return asked
    return next(d for d in (*DRILL_ORDER, "hour", "browser") if d not in grouping)


class ReportPages:
    """The report page and its saved reports."""

    def __init__(self, web: Web) -> None:
        self.web = web

    async def reports(self, request: Request) -> Response:
        web = self.web
        session = session_of(request)
        given = request.query_params
        legacy = "q" not in given and any(k in given for k in LEGACY)
        body = legacy_query(given) if legacy else query_of(given)
        settings = await web.run(entities.get_settings, web.engine)
        types = [row["name"] for row in await web.run(postbacks.list_conversion_types, web.engine)]

        def parse(candidate: dict[str, Any]) -> report_query.ReportQuery:
            return report_query.parse_query(
                candidate,
                now=datetime.now(UTC),
                default_timezone=settings["timezone"],
                conversion_types=report_query.known_types(types),
            )

        names = {
            "campaign": await web.run(names_by_id, web, "campaigns"),
            "traffic_source": await web.run(names_by_id, web, "traffic_sources"),
            "offer": await web.run(names_by_id, web, "offers"),
            "affiliate_network": await web.run(names_by_id, web, "affiliate_networks"),
        }
        if given.get("apply"):
            kept = {"then": then} if (then := given.get("then")) else {}
            wanted = form_query(body, given, names)
            try:
                parse(wanted)
            except InvalidInput as exc:
                # The form's mistake is named and the report shown stays as it was.
                session.flash(f"Not applied: {exc.field} {exc.reason}.", "error")
                wanted = body
            return web.redirect(request, session, "/reports" + state_url(wanted, **kept))
        try:
            query = parse(body)
        except InvalidInput as exc:
            raise InvalidInput(f"q.{exc.field}", exc.reason) from exc
        result = await web.run(report_builder.run_report, web.engine, query, settings=settings)
        if params.choice(given, "format", ("csv",)) == "csv":
            columns, records = result.table()
            return StreamingResponse(
                csv_rows(iter(records), columns),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": 'attachment; filename="report.csv"'},
            )
        grouping = list(query.grouping)
        then = next_level(grouping, given.get("then"))
        # The drill-down level the user chose stays in every link of the page.
        keep = {"then": then} if given.get("then") else {}
        chips = []
        for index, item in enumerate(body.get("filters", [])):
            rest = [f for i, f in enumerate(body["filters"]) if i != index]
            chips.append(
                {
                    "text": _chip_text(item, names),
                    "remove": state_url(changed(body, filters=rest or None), **keep),
                }
            )
        offset, limit = query.offset, query.limit
        pages = {
            "previous": state_url({**body, "offset": max(0, offset - limit)}, **keep)
            if offset
            else None,
            "next": state_url({**body, "offset": offset + limit}, **keep)
            if result.truncated
            else None,
        }
        return web.render(
            request,
            session,
            "reports.html",
            section="reports",
            result=result,
            query=query,
            body=body,
            q=json.dumps(body, separators=(",", ":")),
            span=body.get("range", {}),
            dimensions=DIMENSIONS,
            entity_dimensions=ENTITY_DIMENSIONS,
            metrics=METRICS,
            dimension_operators=DIMENSION_OPERATORS,
            metric_operators=METRIC_OPERATORS,
            presets=PRESETS,
            limits=LIMITS,
            headings=HEADINGS,
            chart=_day_chart(query, result),
            then=then,
            chips=chips,
            pages=pages,
            sort_links={n: sort_link(body, n, **keep) for n in (*grouping, *query.metrics)},
            drill=lambda row: drill_link(
                body, row.dimensions, then, (query.date_from, query.date_to)
            ),
            csv_url=state_url(body, format="csv"),
            saved=await web.run(saved_reports.list_saved, web.engine),
            state_url=state_url,
            cell=cell,
            timezones=sorted(zones()),
        )

    async def save(self, request: Request) -> Response:
        """Save the current query under a name (a taken name is refused with that reason)."""
        form = await request.form()
        session = session_of(request)
        body = query_of(QueryParams({"q": str(form.get("q", ""))}))
        back = "/reports" + state_url(body)
        try:
            saved = await self.web.run(
                saved_reports.create_saved,
                self.web.engine,
                name=str(form.get("name", "")),
                query=body,
                now=datetime.now(UTC),
            )
        except (InvalidInput, Conflict) as exc:
            session.flash(f"Not saved: {exc}.", "error")
            return self.web.redirect(request, session, back)
        return self.web.redirect(request, session, back, f"Saved as “{saved['name']}”.")

    async def rename(self, request: Request) -> Response:
        form = await request.form()
        session = session_of(request)
        report_id = int(request.path_params["id"])
        try:
            saved = await self.web.run(
                saved_reports.update_saved,
                self.web.engine,
                report_id,
                {"name": str(form.get("name", ""))},
                now=datetime.now(UTC),
            )
        except (InvalidInput, Conflict) as exc:
            session.flash(f"Not renamed: {exc}.", "error")
            return self.web.redirect(request, session, "/reports")
        return self.web.redirect(request, session, "/reports", f"Renamed to “{saved['name']}”.")

    async def delete(self, request: Request) -> Response:
        report_id = int(request.path_params["id"])
        saved = await self.web.run(saved_reports.get_saved, self.web.engine, report_id)
        await self.web.run(saved_reports.delete_saved, self.web.engine, report_id)
        return self.web.redirect(
            request, session_of(request), "/reports", f"Deleted “{saved['name']}”."
        )

    async def open_saved(self, request: Request) -> Response:
        saved = await self.web.run(
            saved_reports.get_saved, self.web.engine, int(request.path_params["id"])
        )
        return self.web.redirect(
            request, session_of(request), "/reports" + state_url(saved["query"])
        )


def _day_chart(
    query: report_query.ReportQuery, result: report_builder.ReportResult
) -> dict[str, Any] | None:
    """Clicks per day above a report by day in its own order (not once sorted otherwise)."""
    if query.grouping != ("day",) or query.sort or "clicks" not in query.metrics:
        return None
    if not result.rows:
        return None
    days = [row.dimensions["day"] for row in result.rows]
    return bar_chart([int(row.values["clicks"] or 0) for row in result.rows], days)


def _chip_text(item: dict[str, Any], names: dict[str, dict[int, str]]) -> str:
    name, operator = str(item.get("name", "")), str(item.get("operator", ""))
    values = item.get("values", [item["value"]] if "value" in item else [])
    if name in names:
        values = [names[name].get(int(v), v) if str(v).isdigit() else v for v in values]
    shown = ", ".join(str(v) for v in values)
    return f"{name.replace('_', ' ')} {operator.replace('_', ' ')} {shown}".strip()
