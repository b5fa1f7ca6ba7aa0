"""Admin pages that read what happened: dashboard, conversions, received and sent postbacks
(re-process, resend). The report page is http/webreports.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from clickloop.domain.deliveries import DeliveryState, TargetKind
from clickloop.errors import InvalidInput, NotFound
from clickloop.http import params
from clickloop.http.csvexport import CONVERSION_CSV_COLUMNS, csv_rows
from clickloop.http.webcore import (
    OUTCOMES,
    PAGE_SIZE,
    Web,
    bar_chart,
    names_by_id,
    next_url,
    safe_next,
    session_of,
    zone_of,
)
from clickloop.services import deliveries, entities, postbacks, queries, rate_updates, reports
from clickloop.storage import tables as t


class LogPages:
    """The dashboard and the three logs."""

    def __init__(self, web: Web) -> None:
        self.web = web

    # -- dashboard -----------------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        web = self.web
        settings = await web.run(entities.get_settings, web.engine)
        today = datetime.now(zone_of(settings)).date()
        report = await web.run(
            reports.build_report,
            web.engine,
            group_by="day",
            date_from=today - timedelta(days=29),
            date_to=today,
            timezone=settings["timezone"],
            currency=settings["currency"],
        )
        health = await web.run(deliveries.s2s_health, web.engine)
        labels = [row.key for row in report.rows]
        return web.render(
            request,
            session_of(request),
            "dashboard.html",
            section="dashboard",
            settings=settings,
            zone=zone_of(settings),
            today=report.rows[-1],
            month=report.totals,
            health=health,
            rate_status=await web.run(rate_updates.read_status, web.engine),
            rates_daily=web.rates.daily,
            secrets=await web.secrets(),
            setup_done={
                table: bool(await web.run(entities.list_rows, web.engine, table))
                for table in ("traffic_sources", "affiliate_networks", "offers", "campaigns")
            },
            clicks_chart=bar_chart([row.clicks for row in report.rows], labels),
            revenue_chart=bar_chart([row.revenue for row in report.rows], labels),
            conversions_chart=bar_chart([row.conversion_count for row in report.rows], labels),
        )

    async def enable_target(self, request: Request) -> Response:
        """Switch an S2S target back on; its parked deliveries are queued again."""
        kind = request.path_params["kind"]
        if kind not in {str(k) for k in TargetKind}:
            raise NotFound("target kind", kind)
        target_id = int(request.path_params["id"])

        now = datetime.now(UTC)
        resumed = await self.web.run(
            deliveries.enable_target, self.web.engine, TargetKind(kind), target_id, now=now
        )
        await self.web.on_change()
        return self.web.redirect(
            request,
            session_of(request),
            safe_next(str((await request.form()).get("back", "")) or "/"),
            f"Target enabled again; {resumed} parked deliveries queued.",
        )

    # -- logs ----------------------------------------------------------------------------

    async def conversions(self, request: Request) -> Response:
        web = self.web
        query = request.query_params
        day_from = params.day(query, "from")
        day_to = params.day(query, "to")
        as_csv = params.choice(query, "format", ("csv",)) == "csv"
        settings = await web.run(entities.get_settings, web.engine)
        zone = zone_of(settings)
        filters = {
            "campaign_id": params.whole_number(query, "campaign_id"),
            "type": params.text(query, "type", max_length=64),
            "subid": params.text(query, "subid", max_length=64),
            # Local days of the report time zone, as UTC bounds (the end day included).
            "since": datetime.combine(day_from, time(), zone) if day_from else None,
            "until": (
                datetime.combine(day_to + timedelta(days=1), time(), zone) if day_to else None
            ),
        }
        if as_csv:
            return StreamingResponse(
                csv_rows(queries.iter_conversions(web.engine, **filters), CONVERSION_CSV_COLUMNS),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": 'attachment; filename="conversions.csv"'},
            )
        kept = {k: v for k, v in query.items() if k not in ("format", "cursor")}
        return await self._log_page(
            request,
            queries.list_conversions,
            filters,
            "conversions.html",
            zone=zone,
            day_from=day_from,
            day_to=day_to,
            csv_url="?" + urlencode({**kept, "format": "csv"}),
            campaigns=await web.run(names_by_id, web, "campaigns"),
            offers=await web.run(names_by_id, web, "offers"),
            types=await web.run(postbacks.list_conversion_types, web.engine),
        )

    async def received(self, request: Request) -> Response:
        web = self.web
        filters = params.received_filters(request.query_params)
        settings = await web.run(entities.get_settings, web.engine)
        # What "Re-process all ignored" would take: the ignored rows these filters show, up to
        # the newest one now (the form carries that id, so later arrivals are not taken).
        count, newest = await web.run(postbacks.count_ignored, web.engine, _ignored(filters))
        return await self._log_page(
            request,
            queries.list_received_postbacks,
            filters,
            "received.html",
            zone=zone_of(settings),
            outcomes=OUTCOMES,
            secrets=await web.secrets(),
            ignored_count=count,
            ignored_up_to=newest,
        )

    async def reprocess(self, request: Request) -> Response:
        session = session_of(request)
        log_id = int(request.path_params["id"])
        try:
            result = await self.web.run(
                postbacks.reprocess, self.web.engine, log_id, now=datetime.now(UTC)
            )
        except InvalidInput as exc:
            session.flash(exc.reason, "error")
            return self.web.redirect(request, session, "/received-postbacks")
        outcome = f"{result.outcome}" + (f" ({result.reason})" if result.reason else "")
        return self.web.redirect(
            request,
            session,
            "/received-postbacks",
            f"Postback {log_id} re-processed as #{result.log_id}: {outcome}.",
        )

    async def reprocess_all(self, request: Request) -> Response:
        """Re-run the ignored postbacks not re-run yet that the page showed under its filters
        (after a training or rate was added), then show that page again."""
        form = await request.form()
        given = {k: str(v) for k, v in form.items() if k in ("outcome", "reason", "subid", "up_to")}
        filters = params.received_filters(given)
        chosen = _ignored(filters, up_to=params.whole_number(given, "up_to"))

        def run_all() -> dict[str, int]:
            counts: dict[str, int] = {}
            now = datetime.now(UTC)
            for _, result in postbacks.reprocess_ignored(self.web.engine, chosen, now=now):
                counts[str(result.outcome)] = counts.get(str(result.outcome), 0) + 1
            return counts

        counts = await self.web.run(run_all)
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        shown = urlencode({k: v for k, v in filters.items() if v})
        return self.web.redirect(
            request,
            session_of(request),
            "/received-postbacks" + (f"?{shown}" if shown else ""),
            f"Re-processed {sum(counts.values())} ignored postbacks"
            + (f": {summary}." if summary else "."),
        )

    async def deliveries(self, request: Request) -> Response:
        web = self.web
        query = request.query_params
        states = [str(s) for s in DeliveryState]
        kinds = [str(k) for k in TargetKind]
        targets = await web.run(self._target_names)
        settings = await web.run(entities.get_settings, web.engine)
        zone = zone_of(settings)
        # One target as `kind:id` (the select's values); it narrows the target kind too.
        target = params.choice(query, "target", [f"{k}:{i}" for k, i in targets])
        target_kind, _, target_id = (target or "").partition(":")
        day_from, day_to = params.day(query, "from"), params.day(query, "to")
        filters = {
            "state": params.choice(query, "state", states),
            "target_kind": target_kind or params.choice(query, "target_kind", kinds),
            "target_id": int(target_id) if target_id else None,
            "conversion_id": params.whole_number(query, "conversion_id"),
            "subid": params.text(query, "subid", max_length=64),
            # Local days of the report time zone, as UTC bounds (the end day included).
            "since": datetime.combine(day_from, time(), zone) if day_from else None,
            "until": (
                datetime.combine(day_to + timedelta(days=1), time(), zone) if day_to else None
            ),
        }
        return await self._log_page(
            request,
            queries.list_deliveries,
            filters,
            "deliveries.html",
            zone=zone,
            states=states,
            kinds=kinds,
            target=target,
            day_from=day_from,
            day_to=day_to,
            back=request.url.path.removeprefix(request.scope.get("root_path", ""))
            + (f"?{request.url.query}" if request.url.query else ""),
            targets=targets,
            secrets=await web.secrets(),
        )

    async def _log_page(
        self,
        request: Request,
        listing: Callable[..., queries.Page],
        filters: dict[str, Any],
        template: str,
        **context: Any,
    ) -> Response:
        """One page of a log, newest first, under `filters`, with the link to the next page."""
        web = self.web
        page = await web.run(
            listing,
            web.engine,
            limit=PAGE_SIZE,
            cursor=params.cursor(request.query_params),
            **filters,
        )
        return web.render(
            request,
            session_of(request),
            template,
            section=template.removesuffix(".html"),
            page=page,
            filters=filters,
            next_url=next_url(request, page.next_cursor),
            **context,
        )

    def _target_names(self) -> dict[tuple[str, int], str]:
        names = {
            (str(TargetKind.TRAFFIC_SOURCE), i): n
            for i, n in names_by_id(self.web, "traffic_sources").items()
        }
        campaigns = names_by_id(self.web, "campaigns")
        with self.web.engine.connect() as conn:
            for pid, cid in conn.execute(
                select(t.campaign_postbacks.c.id, t.campaign_postbacks.c.campaign_id)
            ):
                names[(str(TargetKind.CAMPAIGN_POSTBACK), pid)] = (
                    f"{campaigns.get(cid, cid)} · postback {pid}"
                )
        return names

    async def delivery(self, request: Request) -> Response:
        web = self.web
        delivery_id = int(request.path_params["id"])
        item = await web.run(queries.get_delivery, web.engine, delivery_id)
        settings = await web.run(entities.get_settings, web.engine)
        return web.render(
            request,
            session_of(request),
            "delivery.html",
            section="deliveries",
            delivery=item,
            target=(await web.run(self._target_names)).get(
                (item["target_kind"], item["target_id"]), ""
            ),
            zone=zone_of(settings),
            secrets=await web.secrets(),
        )

    async def resend(self, request: Request) -> Response:
        """Send a delivery again: as stored, or (`rerender`) rendered from the current
        configuration, which supersedes it with a new delivery."""
        delivery_id = int(request.path_params["id"])
        session = session_of(request)
        form = await request.form()
        rerender = form.get("rerender") == "1"
        now = datetime.now(UTC)
        resent = await self.web.run(
            deliveries.resend, self.web.engine, [delivery_id], now=now, rerender=rerender
        )
        back = safe_next(str(form.get("back", "")) or "/deliveries")
        new_id = resent.queued.get(delivery_id)
        if new_id == delivery_id:
            session.flash(f"Delivery {delivery_id} queued again.")
        elif new_id is not None:
            session.flash(f"Delivery {delivery_id} rendered again and queued as {new_id}.")
            if back == f"/deliveries/{delivery_id}":
                back = f"/deliveries/{new_id}"
        else:
            reason = resent.skipped.get(delivery_id, deliveries.NOT_RESENDABLE)
            session.flash(f"Delivery {delivery_id} was not queued: {reason}.", "error")
        return self.web.redirect(request, session, back)

    async def resend_selected(self, request: Request) -> Response:
        """Send the deliveries ticked on the page again (as `clickloop deliveries resend`)."""
        form = await request.form()
        session = session_of(request)
        back = safe_next(str(form.get("back", "")) or "/deliveries")
        ids = [params.whole_number({"id": str(v)}, "id") for v in form.getlist("id")]
        chosen = sorted({i for i in ids if i is not None})
        if not chosen:
            session.flash("Tick the deliveries to send again first.", "error")
            return self.web.redirect(request, session, back)
        rerender = form.get("rerender") == "1"
        now = datetime.now(UTC)
        resent = await self.web.run(
            deliveries.resend, self.web.engine, chosen, now=now, rerender=rerender
        )
        done = "rendered again and queued" if rerender else "queued again"
        message = f"{len(resent.queued)} of {len(chosen)} deliveries {done}"
        skipped = "; ".join(f"{i}: {reason}" for i, reason in sorted(resent.skipped.items()))
        session.flash(message + (f"; not queued: {skipped}." if skipped else "."))
        return self.web.redirect(request, session, back)

    async def resend_failed(self, request: Request) -> Response:
        now = datetime.now(UTC)
        rerender = (await request.form()).get("rerender") == "1"
        count = await self.web.run(
            deliveries.resend_failed, self.web.engine, now=now, rerender=rerender
        )
        done = "rendered again and queued" if rerender else "queued again"
        return self.web.redirect(
            request, session_of(request), "/deliveries", f"{count} failed deliveries {done}."
        )


def _ignored(filters: dict[str, str | None], up_to: int | None = None) -> postbacks.IgnoredFilter:
    return postbacks.IgnoredFilter(
        outcome=filters["outcome"], reason=filters["reason"], subid=filters["subid"], up_to=up_to
    )
