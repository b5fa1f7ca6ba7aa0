"""Admin pages behind every conversion: the clicks log, a click with everything that came of it,
a conversion with its history and a manual status change, and the conversions upload.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from clickloop.domain.postbacks import Outcome
from clickloop.errors import InvalidInput, NotFound
from clickloop.http import params
from clickloop.http.webcore import PAGE_SIZE, Web, names_by_id, next_url, session_of, zone_of
from clickloop.services import entities, postbacks, queries
from clickloop.storage.tables import SUB_ID_COUNT

# What the page shows about a click first; the rest of its fields follow in column order.
_CLICK_HEAD = ("subid", "created_at", "campaign_id", "offer_id", "traffic_source_id")
# An upload is read into memory and imported line by line: bigger files are for the CLI.
MAX_UPLOAD_BYTES = 1024 * 1024
MAX_UPLOAD_LINES = 5000
PREVIEW_LINES = 10
_HEADER = ("subid", "payout", "tid", "status")
# Related rows shown on a click's page; the full lists are a link away.
RELATED_ROWS = 20


class ClickPages:
    """Clicks log, click, conversion (with manual status) and conversions upload."""

    def __init__(self, web: Web) -> None:
        self.web = web

    async def _zone(self) -> ZoneInfo:
        return zone_of(await self.web.run(entities.get_settings, self.web.engine))

    # -- clicks ----------------------------------------------------------------------------

    async def clicks(self, request: Request) -> Response:
        web = self.web
        query = request.query_params
        zone = await self._zone()
        subid = params.text(query, "subid", max_length=64)
        country = params.text(query, "country", max_length=2)
        if country and not (country.isascii() and country.isalpha() and len(country) == 2):
            raise InvalidInput("country", "two letters, such as DE")
        filters = {
            "campaign_id": params.whole_number(query, "campaign_id"),
            "traffic_source_id": params.whole_number(query, "traffic_source_id"),
            "external_id": params.text(query, "external_id"),
            "country": country,
            "since": _local_moment(query, "from", zone),
            "until": _local_moment(query, "to", zone),
        }
        cursor = params.cursor(query)
        if subid:
            # One click at most: the log shows it (or nothing) under the other filters too.
            try:
                found = [await web.run(queries.get_click, web.engine, subid)]
            except NotFound:
                found = []
            page = queries.Page(items=[c for c in found if _matches(c, filters)], next_cursor=None)
        else:
            page = await web.run(
                queries.search_clicks, web.engine, limit=PAGE_SIZE, cursor=cursor, **filters
            )
        return web.render(
            request,
            session_of(request),
            "clicks.html",
            section="clicks",
            page=page,
            filters={**filters, "subid": subid},
            asked={name: query.get(name, "") for name in ("from", "to")},
            next_url=next_url(request, page.next_cursor),
            zone=zone,
            campaigns=await web.run(names_by_id, web, "campaigns"),
            sources=await web.run(names_by_id, web, "traffic_sources"),
        )

    async def click(self, request: Request) -> Response:
        web = self.web
        subid = str(request.path_params["subid"])
        try:
            click = await web.run(queries.get_click, web.engine, subid[:64])
        except NotFound:
            return web.render(
                request,
                session_of(request),
                "error.html",
                status=404,
                section="clicks",
                message=f"No click has the subid {subid[:64]!r}. A postback may have carried a "
                "mistyped one, or the click is older than the clicks kept. Search the clicks log.",
                back="/clicks",
                back_label="Open the clicks log",
            )
        related = {"limit": RELATED_ROWS, "subid": click["subid"]}
        conversions = await web.run(queries.list_conversions, web.engine, **related)
        received = await web.run(queries.list_received_postbacks, web.engine, **related)
        sent = await web.run(queries.list_deliveries, web.engine, **related)
        fields, empty = _click_fields(click)
        return web.render(
            request,
            session_of(request),
            "click.html",
            section="clicks",
            click=click,
            fields=fields,
            empty=empty,
            conversions=conversions,
            received=received,
            sent=sent,
            zone=await self._zone(),
            names=await web.run(_entity_names, web),
            secrets=await web.secrets(),
        )

    # -- a conversion --------------------------------------------------------------------

    async def conversion(self, request: Request) -> Response:
        web = self.web
        conversion_id = int(request.path_params["id"])
        item = await web.run(queries.get_conversion, web.engine, conversion_id)
        history = await web.run(
            queries.conversion_history, web.engine, item["subid"], conversion_id
        )
        sent = await web.run(
            queries.list_deliveries, web.engine, conversion_id=conversion_id, limit=100
        )
        return web.render(
            request,
            session_of(request),
            "conversion.html",
            section="conversions",
            conversion=item,
            history=history,
            sent=sent,
            statuses=postbacks.MANUAL_STATUSES,
            zone=await self._zone(),
            names=await web.run(_entity_names, web),
            secrets=await web.secrets(),
        )

    async def change_status(self, request: Request) -> Response:
        """A status set by hand, through the postback use case (logged as MANUAL)."""
        web = self.web
        session = session_of(request)
        conversion_id = int(request.path_params["id"])
        status = str((await request.form()).get("status", ""))
        user = request.scope["clickloop_user"].username
        result = await web.run(
            postbacks.change_status,
            web.engine,
            conversion_id,
            status,
            user=f"admin:{user}",
            now=datetime.now(UTC),
        )
        if result.outcome == Outcome.IGNORED:
            session.flash(f"Status not changed: {result.reason}.", "error")
        elif result.outcome == Outcome.DUPLICATE:
            session.flash(f"The conversion is a {status} already; nothing changed.")
        else:
            session.flash(f"Status set to {status} (logged as postback #{result.log_id}).")
        return web.redirect(request, session, f"/conversions/{conversion_id}")

    # -- upload --------------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        """Paste or pick a file, see its first lines, then import: `import conversions`'s path."""
        web = self.web
        session = session_of(request)
        context: dict[str, Any] = {"section": "conversions", "max_lines": MAX_UPLOAD_LINES}
        if request.method == "GET":
            return web.render(request, session, "upload.html", **context)
        form = await request.form()
        try:
            text = await _upload_text(form.get("file"), str(form.get("text", "")))
        except InvalidInput as exc:
            return web.render(
                request, session, "upload.html", status=422, error=exc.reason, **context
            )
        lines = text.splitlines()
        if form.get("step") != "import":
            # What the import will read: the lines it skips are left out here too.
            data = [_cells(line) for line in lines if line.strip() and line.strip()[0] != "#"]
            data = [cells for cells in data if [c.lower() for c in cells] != list(_HEADER)]
            preview = data[:PREVIEW_LINES]
            return web.render(
                request,
                session,
                "upload.html",
                text=text,
                preview=preview,
                count=len(data),
                **context,
            )
        user = request.scope["clickloop_user"].username

        def run_import() -> list[tuple[int, str, postbacks.PostbackResult]]:
            imported = postbacks.import_conversions(
                web.engine, lines, now=datetime.now(UTC), source=f"upload:{user}"
            )
            return [(number, lines[number - 1], result) for number, result in imported]

        results = await web.run(run_import)
        counts: dict[str, int] = {}
        for _, _, result in results:
            counts[str(result.outcome)] = counts.get(str(result.outcome), 0) + 1
        return web.render(
            request, session, "upload.html", results=results, counts=counts, **context
        )


def _local_moment(query: params.Params, name: str, zone: ZoneInfo) -> datetime | None:
    """A `datetime-local` field (or a date) read in the settings' time zone."""
    value = query.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value) if len(value) <= 32 else None
    except ValueError:
        moment = None
    if moment is None:
        raise InvalidInput(name, "a local time as YYYY-MM-DDTHH:MM or a date as YYYY-MM-DD")
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _matches(click: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Whether one click passes the log's other filters (as `click_conditions` would)."""
    checks = {
        "campaign_id": lambda v: click["campaign_id"] == v,
        "traffic_source_id": lambda v: click["traffic_source_id"] == v,
        "external_id": lambda v: click["external_id"] == v,
        "country": lambda v: (click["country"] or "") == v.upper(),
        "since": lambda v: click["created_at"] >= v,
        "until": lambda v: click["created_at"] < v,
    }
    return all(checks[name](value) for name, value in filters.items() if value is not None)


def _click_fields(click: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """A click's stored fields with a value (first the ones that place it), and the names of
    the empty ones."""
    names = list(_CLICK_HEAD) + [name for name in click if name not in _CLICK_HEAD]
    fields = [(name, click[name]) for name in names if click[name] not in (None, "", {})]
    empty = [name for name in names if click[name] in (None, "", {})]
    # Thirty empty sub_id fields say one thing: name them as a range.
    subs = [f"sub_id_{n}" for n in range(1, SUB_ID_COUNT + 1)]
    if all(name in empty for name in subs):
        empty = [name for name in empty if name not in subs] + [f"sub_id_1…{SUB_ID_COUNT}"]
    return fields, empty


def _entity_names(web: Web) -> dict[str, dict[int, str]]:
    return {
        "campaign_id": names_by_id(web, "campaigns"),
        "offer_id": names_by_id(web, "offers"),
        "traffic_source_id": names_by_id(web, "traffic_sources"),
    }


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader(io.StringIO(line)), [])]


async def _upload_text(file: UploadFile | str | None, pasted: str) -> str:
    """The upload's text: the file when one was picked, else what was pasted."""
    if isinstance(file, UploadFile) and file.filename:
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput("file", "not UTF-8 text") from exc
    else:
        data, text = pasted.encode(), pasted
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput("file", "over 1 MiB: import it with `clickloop import conversions`")
    if "\x00" in text:
        raise InvalidInput("file", "text with NUL characters")
    if not text.strip():
        raise InvalidInput("file", "empty: paste lines or pick a file")
    if len(text.splitlines()) > MAX_UPLOAD_LINES:
        raise InvalidInput(
            "file",
            f"over {MAX_UPLOAD_LINES} lines: import it with `clickloop import conversions`",
        )
    return text
