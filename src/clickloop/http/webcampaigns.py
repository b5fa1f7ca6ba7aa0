"""The campaign pages: the list as a work screen (figures for a period, sort, search, filters,
bulk pause/resume/archive/restore), a campaign's page (links, offers, S2S health, its report by
day) and its form; clone, archive and restore. Thin adapters over services/campaigns.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from clickloop.domain.costs import COST_MODELS
from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.http import params, webforms
from clickloop.http.webcore import Web, names_by_id, session_of, zone_of
from clickloop.http.webreports import state_url
from clickloop.services import campaigns, entities, postbacks
from clickloop.services.campaigns import PERIODS, SORTS, STATES, Period

# Column headings of the figures (the list's and the campaign page's day table).
HEADINGS = {
    "clicks": "Clicks",
    "unique_clicks": "Unique",
    "leads": "Leads",
    "sales": "Sales",
    "pending_revenue": "Pending",
    "revenue": "Confirmed",
    "cost": "Cost",
    "projected_profit": "Profit",
    "projected_roi": "ROI",
    "cr": "CR",
    "epc": "EPC",
    "cpa": "CPA",
}
# The list's columns: key figures first (they stay in view on a phone), the rest after.
COLUMNS = (
    "clicks",
    "projected_profit",
    "projected_roi",
    "unique_clicks",
    "leads",
    "sales",
    "pending_revenue",
    "revenue",
    "cost",
    "cr",
    "epc",
    "cpa",
)
MONEY = frozenset({"pending_revenue", "revenue", "cost", "projected_profit", "epc", "cpa"})
PERCENT = frozenset({"projected_roi", "roi", "cr"})
PERIOD_LABELS = {
    "today": "Today",
    "yesterday": "Yesterday",
    "last_7_days": "7 days",
    "last_30_days": "30 days",
    "this_month": "This month",
    "custom": "Custom",
}
BULK_ACTIONS = ("pause", "resume", "archive", "restore")
LIST_FILTERS = ("period", "from", "to", "q", "source", "network", "state", "sort", "order")


class CampaignPages:
    def __init__(self, web: Web) -> None:
        self.web = web

    async def campaigns(self, request: Request) -> Response:
        web = self.web
        query = request.query_params
        params.refuse_unknown(query.keys(), LIST_FILTERS)
        order = params.choice(query, "order", ("asc", "desc"))
        sort = params.choice(query, "sort", SORTS) or "clicks"
        period = params.choice(query, "period", PERIODS)
        # The form carries the shown dates along; they count only for a custom period.
        custom = period in (None, "custom")
        by_words = sort in campaigns.WORD_SORTS
        board = await web.run(
            campaigns.campaign_board,
            web.engine,
            default_base=web.base_url,
            now=datetime.now(UTC),
            period=period,
            date_from=params.day(query, "from") if custom else None,
            date_to=params.day(query, "to") if custom else None,
            search=params.text(query, "q") or "",
            traffic_source_id=params.whole_number(query, "source"),
            network_id=params.whole_number(query, "network"),
            state=params.choice(query, "state", STATES),
            sort=sort,
            descending=(order or ("asc" if by_words else "desc")) == "desc",
        )
        kept = {k: v for k, v in query.items() if k in LIST_FILTERS and v}
        if not custom:
            kept = {k: v for k, v in kept.items() if k not in ("from", "to")}
        return web.render(
            request,
            session_of(request),
            "campaigns.html",
            section="campaigns",
            board=board,
            columns=COLUMNS,
            headings=HEADINGS,
            money_columns=MONEY,
            percent_columns=PERCENT,
            periods=PERIOD_LABELS,
            sources=await web.run(names_by_id, web, "traffic_sources"),
            networks=await web.run(names_by_id, web, "affiliate_networks"),
            asked=kept,
            here="?" + urlencode(kept) if kept else "",
            sort_url=lambda name: _sort_url(kept, name, board),
            period_url=lambda name: _with(kept, period=name, **{"from": None, "to": None}),
            report_url=lambda campaign_id: report_url(board.period, campaign_id),
        )

    async def bulk(self, request: Request) -> Response:
        """Pause, resume, archive or restore the ticked campaigns, back to the list as it was."""
        web = self.web
        form = await request.form()
        session = session_of(request)
        back = _back(str(form.get("back", "")))
        action = str(form.get("action", ""))
        ids = [str(value) for value in form.getlist("id")]
        try:
            if action not in BULK_ACTIONS:
                raise InvalidInput("action", f"one of {', '.join(BULK_ACTIONS)}")
            if not all(value.isascii() and value.isdigit() and len(value) < 10 for value in ids):
                raise InvalidInput("id", "campaign ids")
            message = await self._apply(action, [int(value) for value in ids])
        except (InvalidInput, NotFound) as exc:
            session.flash(f"Nothing changed: {exc}", "error")
            return web.redirect(request, session, back)
        await web.on_change()
        return web.redirect(request, session, back, message)

    async def _apply(self, action: str, ids: list[int]) -> str:
        web = self.web
        if action in ("pause", "resume"):
            status = "paused" if action == "pause" else "active"
            changed = await web.run(campaigns.set_status, web.engine, ids, status)
            effect = "their links answer 404" if status == "paused" else "their links count clicks"
            return f"{changed} of {len(ids)} campaign(s) {status}: {effect}."
        if action == "archive":
            changed = await web.run(campaigns.archive, web.engine, ids, now=datetime.now(UTC))
            return (
                f"{changed} campaign(s) archived: hidden from the list, their links answer 404; "
                "their data stays (see the archived filter)."
            )
        changed = await web.run(campaigns.restore, web.engine, ids)
        return f"{changed} campaign(s) restored, paused: resume them to count clicks again."

    async def one_action(self, request: Request) -> Response:
        """Pause/resume (`status`), archive or restore one campaign from its row or page."""
        web = self.web
        campaign_id = int(request.path_params["id"])
        form = await request.form()
        session = session_of(request)
        back = _back(str(form.get("back", "")))
        verb = request.url.path.rsplit("/", 1)[-1]
        action = verb
        if verb == "status":
            action = "pause" if str(form.get("status", "")) == "paused" else "resume"
        try:
            message = await self._apply(action, [campaign_id])
        except InvalidInput as exc:
            session.flash(exc.reason, "error")
            return web.redirect(request, session, back)
        await web.on_change()
        if verb == "status":  # the row's button: the wording the list has always had
            message = (
                "Campaign paused: its link answers 404."
                if action == "pause"
                else "Campaign active again."
            )
        return web.redirect(request, session, back, message)

    async def clone(self, request: Request) -> Response:
        web = self.web
        session = session_of(request)
        campaign_id = int(request.path_params["id"])
        try:
            new_id = await web.run(campaigns.clone, web.engine, campaign_id, now=datetime.now(UTC))
        except (InvalidInput, Conflict) as exc:
            session.flash(f"Not cloned: {exc}", "error")
            return web.redirect(request, session, f"/campaigns/{campaign_id}")
        await web.on_change()
        copy = await web.run(entities.get_entity, web.engine, "campaigns", new_id)
        return web.redirect(
            request,
            session,
            f"/campaigns/{new_id}",
            f"Cloned as “{copy['name']}” with alias /{copy['alias']}: the same offers, weights "
            "and S2S postbacks. Rename it under Edit.",
        )

    async def page_or_save(self, request: Request) -> Response:
        """`/campaigns/{id}`: GET the campaign's page; POST saves its form (the form's address
        before it moved to `/edit`). One route, so that other methods get a 405 naming both."""
        return await (self.form if request.method == "POST" else self.page)(request)

    async def page(self, request: Request) -> Response:
        """A campaign's page: its link, offers and weights, S2S targets and their health, and
        its report by day for the period asked (the list's periods)."""
        web = self.web
        query = request.query_params
        params.refuse_unknown(query.keys(), ("period", "from", "to"))
        campaign_id = int(request.path_params["id"])
        campaign = await web.run(entities.get_entity, web.engine, "campaigns", campaign_id)
        settings = await web.run(entities.get_settings, web.engine)
        zone = str(settings["timezone"])
        period, days = await web.run(
            campaigns.campaign_days,
            web.engine,
            campaign_id,
            now=datetime.now(UTC),
            period=params.choice(query, "period", PERIODS),
            date_from=params.day(query, "from"),
            date_to=params.day(query, "to"),
        )
        source = None
        if campaign["traffic_source_id"] is not None:
            source = await web.run(
                entities.get_entity, web.engine, "traffic_sources", campaign["traffic_source_id"]
            )
        parameters = source["parameters"] if source else []
        base = campaigns.link_base(settings | {"default_base": web.base_url}, campaign)
        offers = await web.run(names_by_id, web, "offers")
        kept = {k: v for k, v in query.items() if v}
        return web.render(
            request,
            session_of(request),
            "campaign.html",
            section="campaigns",
            campaign=campaign,
            source=source,
            link=campaigns.campaign_link(base, campaign["alias"], parameters),
            bare_link=campaigns.campaign_link(base, campaign["alias"], []),
            base=base,
            parameters=parameters,
            offers=offers,
            weight_total=sum(o["weight"] for o in campaign["offers"]) or 1,
            targets=await web.run(campaigns.target_health, web.engine, campaign_id),
            recent_limit=campaigns.RECENT_DELIVERIES,
            secrets=await web.secrets(),
            days=days,
            period=period,
            periods=PERIOD_LABELS,
            period_url=lambda name: _with(kept, period=name, **{"from": None, "to": None}),
            columns=COLUMNS,
            headings=HEADINGS,
            money_columns=MONEY,
            percent_columns=PERCENT,
            report_url=report_url(period, campaign_id),
            day_url=lambda day: report_url(
                Period(name="custom", date_from=day, date_to=day, timezone=zone),
                campaign_id,
                grouping="sub_id_1",
            ),
            zone=zone_of(settings),
            here=f"/campaigns/{campaign_id}" + ("?" + urlencode(kept) if kept else ""),
        )

    async def form(self, request: Request) -> Response:
        """Create (/campaigns/new) or edit (/campaigns/{id}/edit; POST /campaigns/{id} too)."""
        web = self.web
        session = session_of(request)
        campaign_id: int | None = request.path_params.get("id")
        error: str | None = None
        values: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            try:
                values = webforms.campaign(form)
                if campaign_id is None:
                    campaign_id = await web.run(
                        entities.create_campaign, web.engine, now=datetime.now(UTC), **values
                    )
                    message = "Campaign created."
                else:
                    await web.run(
                        entities.update_entity,
                        web.engine,
                        "campaigns",
                        campaign_id,
                        values,
                        now=datetime.now(UTC),
                    )
                    message = "Campaign saved."
                await web.on_change()
                return web.redirect(request, session, f"/campaigns/{campaign_id}", message)
            except (InvalidInput, Conflict, NotFound) as exc:
                error = str(exc)
                values = webforms.campaign_echo(form)
        campaign = (
            await web.run(entities.get_entity, web.engine, "campaigns", campaign_id)
            if campaign_id
            else None
        )
        if campaign is not None and not values:
            values = campaign
        settings = await web.run(entities.get_settings, web.engine)
        return web.render(
            request,
            session,
            "campaign_form.html",
            status=422 if error else 200,
            section="campaigns",
            campaign=campaign,
            values=values,
            sources=await web.run(entities.list_rows, web.engine, "traffic_sources"),
            offers=await web.run(entities.list_rows, web.engine, "offers"),
            types=await web.run(postbacks.list_conversion_types, web.engine),
            domains=settings["tracking_domains"],
            default_base=campaigns.link_base(
                settings | {"default_base": web.base_url}, {"tracking_domain": None}
            ),
            error=error,
            cost_models=COST_MODELS,
        )


def report_url(period: Period, campaign_id: int, grouping: str = "day") -> str:
    """The report page with this campaign's filter, over `period`."""
    span: dict[str, str] = (
        {"from": str(period.date_from), "to": str(period.date_to)}
        if period.name == "custom"
        else {"preset": period.name}
    )
    query = {
        "range": span,
        "grouping": [grouping],
        "filters": [{"name": "campaign", "operator": "equals", "value": str(campaign_id)}],
    }
    return "/reports" + state_url(query)


def _with(kept: dict[str, str], **changes: str | None) -> str:
    merged = {**kept, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v})


def _sort_url(kept: dict[str, str], name: str, board: campaigns.Board) -> str:
    """Sort by `name`; again: the other way. Names first A-Z, figures from the most."""
    if board.sort == name:
        order = "asc" if board.descending else "desc"
    else:
        order = "asc" if name in campaigns.WORD_SORTS else "desc"
    return _with(kept, sort=name, order=order)


def _back(value: str) -> str:
    """Where a form returns: the list with the filters it was showing, or a campaign's page."""
    path, _, query = value.partition("?")
    allowed = path == "/campaigns" or (
        path.startswith("/campaigns/") and path.removeprefix("/campaigns/").isdigit()
    )
    if not allowed:
        return "/campaigns"
    kept = QueryParams(query)
    clean = {k: v for k, v in kept.items() if k in LIST_FILTERS}
    return path + ("?" + urlencode(clean) if clean else "")
