"""Admin pages that configure the tracker: campaigns, traffic sources, affiliate networks,
offers and settings. Each handler is a thin adapter over the entity and template services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from clickloop.catalog.templates import (
    AffiliateNetworkTemplate,
    Catalog,
    Template,
    TrafficSourceTemplate,
    uncaptured_click_fields,
)
from clickloop.domain.clicks import join_offer_params
from clickloop.errors import ClickloopError, Conflict, InvalidInput, NotFound
from clickloop.http import webforms
from clickloop.http.webcore import (
    Session,
    Web,
    names_by_id,
    session_of,
    zones,
)
from clickloop.services import campaigns, entities, postbacks, sessions, templates, tokens, users


class EntityPages:
    """Create, edit and list what the tracker is configured with."""

    def __init__(self, web: Web) -> None:
        self.web = web

    # -- traffic sources -----------------------------------------------------------------

    async def traffic_sources(self, request: Request) -> Response:
        web = self.web
        rows = await web.run(entities.list_rows, web.engine, "traffic_sources")
        return web.render(
            request,
            session_of(request),
            "traffic_sources.html",
            section="traffic-sources",
            sources=rows,
            secrets=await web.secrets(),
        )

    async def traffic_source_form(self, request: Request) -> Response:
        web = self.web
        form = await self._templated_form(request, _SOURCES)
        if isinstance(form, Response):
            return form
        source = form.entity
        types = await web.run(postbacks.list_conversion_types, web.engine)
        used_by = []
        uncaptured: tuple[str, ...] = ()
        if source is not None:
            uncaptured = uncaptured_click_fields(
                (row["name"] for row in source["parameters"]),
                source["postback_url"],
                source["postback_body"],
            )
            settings = await web.run(entities.get_settings, web.engine)
            links = settings | {"default_base": web.base_url}
            used_by = [
                {
                    **c,
                    "link": campaigns.campaign_link(
                        campaigns.link_base(links, c), c["alias"], source["parameters"]
                    ),
                }
                for c in await web.run(entities.list_rows, web.engine, "campaigns")
                if c["traffic_source_id"] == source["id"] and c["archived_at"] is None
            ]
        return web.render(
            request,
            session_of(request),
            "traffic_source_form.html",
            used_by=used_by,
            uncaptured=uncaptured,
            status=422 if form.error else 200,
            section="traffic-sources",
            source=source,
            values=form.values,
            types=types,
            template=form.template,
            catalog=form.catalog.traffic_sources,
            asked=form.asked,
            matches=form.matches,
            error=form.error,
        )

    async def reapply(self, request: Request) -> Response:
        """Overwrite a source or network with its template as the catalog has it now."""
        web = self.web
        session = session_of(request)
        entity_id = int(request.path_params["id"])
        kind = request.url.path.removeprefix(request.scope.get("root_path", "")).split("/")[1]
        reapply = (
            templates.reapply_traffic_source_template
            if kind == "traffic-sources"
            else templates.reapply_affiliate_network_template
        )
        catalog = await web.run(templates.load_user_catalog, web.data_dir)
        try:
            changed = await web.run(reapply, web.engine, catalog, entity_id, now=datetime.now(UTC))
        except ClickloopError as exc:
            session.flash(f"Template not re-applied: {exc}", "error")
            return web.redirect(request, session, f"/{kind}/{entity_id}")
        await web.on_change()
        message = (
            "Template re-applied; changed: " + ", ".join(sorted(changed)) + "."
            if changed
            else "Already the same as its template: nothing changed."
        )
        return web.redirect(request, session, f"/{kind}/{entity_id}", message)

    async def _templated_form(
        self, request: Request, kind: _TemplatedKind
    ) -> Response | _TemplatedForm:
        """What the source and network forms share: the template asked for (new entities only),
        a posted form saved (the redirect) or its error and values, and the stored entity."""
        web = self.web
        entity_id: int | None = request.path_params.get("id")
        catalog = await web.run(templates.load_user_catalog, web.data_dir)
        asked = (request.query_params.get("template") or "").strip()
        template: Template | None = None
        matches: tuple[Template, ...] = ()
        if asked and entity_id is None:
            # What the picker sends is a key from its suggestions or whatever was typed:
            # a name, part of one, a domain. One match is used; several are offered.
            found = catalog.resolve(kind.template_class, asked)
            if isinstance(found, tuple):
                matches = found
            else:
                template = found
        error: str | None = None
        values: dict[str, Any] = {}
        if request.method == "POST":
            saved = await self._save(request, kind, catalog, template, entity_id)
            if isinstance(saved, Response):
                return saved
            error, values = saved
        entity = None
        if entity_id is not None:
            entity = await web.run(entities.get_entity, web.engine, kind.table, entity_id)
            values = values or entity
        return _TemplatedForm(
            catalog=catalog,
            template=template,
            asked=asked if template is None else "",
            matches=matches,
            entity=entity,
            values=values,
            error=error,
        )

    async def _save(
        self,
        request: Request,
        kind: _TemplatedKind,
        catalog: Catalog,
        template: Template | None,
        entity_id: int | None,
    ) -> Response | tuple[str, dict[str, Any]]:
        """Create (from `template` or the form) or update from a posted form: a redirect to the
        saved entity, or the error and the form's values to show again."""
        web = self.web
        form = await request.form()
        now = datetime.now(UTC)
        try:
            if template is not None:
                entity_id = await web.run(
                    kind.create_from_template,
                    web.engine,
                    catalog,
                    template_key=template.key,
                    field_values=webforms.template_fields(form, template.fields),
                    now=now,
                    name=str(form.get("name", "")).strip() or None,
                )
            elif entity_id is None:
                entity_id = await web.run(kind.create, web.engine, now=now, **kind.parse(form))
            else:
                await web.run(
                    entities.update_entity,
                    web.engine,
                    kind.table,
                    entity_id,
                    kind.parse(form),
                    now=now,
                )
            await web.on_change()
        except (InvalidInput, Conflict, NotFound) as exc:
            return str(exc), kind.parse(form)
        return web.redirect(request, session_of(request), f"{kind.path}/{entity_id}", kind.saved)

    # -- affiliate networks --------------------------------------------------------------

    async def networks(self, request: Request) -> Response:
        web = self.web
        rows = await web.run(entities.list_rows, web.engine, "affiliate_networks")
        return web.render(
            request,
            session_of(request),
            "networks.html",
            section="affiliate-networks",
            networks=rows,
        )

    async def network_form(self, request: Request) -> Response:
        web = self.web
        form = await self._templated_form(request, _NETWORKS)
        if isinstance(form, Response):
            return form
        network = form.entity
        builder = None
        if network is not None:
            settings = await web.run(entities.get_settings, web.engine)
            builder = webforms.postback_builder(
                templates.network_postback_url(
                    web.base_url, settings["postback_key"], network["postback_params"]
                ),
                network,
                request.query_params,
            )
        types = await web.run(postbacks.list_conversion_types, web.engine)
        return web.render(
            request,
            session_of(request),
            "network_form.html",
            status=422 if form.error else 200,
            section="affiliate-networks",
            network=network,
            values=form.values,
            types=types,
            template=form.template,
            catalog=form.catalog.affiliate_networks,
            asked=form.asked,
            matches=form.matches,
            builder=builder,
            error=form.error,
        )

    # -- offers --------------------------------------------------------------------------

    async def offers(self, request: Request) -> Response:
        web = self.web
        rows = await web.run(entities.list_rows, web.engine, "offers")
        networks = await web.run(names_by_id, web, "affiliate_networks")
        return web.render(
            request,
            session_of(request),
            "offers.html",
            section="offers",
            offers=rows,
            networks=networks,
        )

    async def offer_form(self, request: Request) -> Response:
        web = self.web
        session = session_of(request)
        offer_id: int | None = request.path_params.get("id")
        error: str | None = None
        values: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            values = webforms.offer(form)
            try:
                now = datetime.now(UTC)
                if offer_id is None:
                    offer_id = await web.run(entities.create_offer, web.engine, now=now, **values)
                else:
                    await web.run(
                        entities.update_entity, web.engine, "offers", offer_id, values, now=now
                    )
                await web.on_change()
                return web.redirect(request, session, f"/offers/{offer_id}", "Offer saved.")
            except (InvalidInput, Conflict, NotFound) as exc:
                error = str(exc)
        offer = None
        if offer_id is not None:
            offer = await web.run(entities.get_entity, web.engine, "offers", offer_id)
            values = values or offer
        settings = await web.run(entities.get_settings, web.engine)
        networks = await web.run(entities.list_rows, web.engine, "affiliate_networks")
        final_url = None
        if offer is not None:
            network = next((n for n in networks if n["id"] == offer["affiliate_network_id"]), None)
            final_url = join_offer_params(offer["url"], network["offer_params"] if network else "")
        return web.render(
            request,
            session,
            "offer_form.html",
            status=422 if error else 200,
            section="offers",
            offer=offer,
            final_url=final_url,
            values=values or {"currency": settings["currency"], "payout": "0"},
            networks=networks,
            error=error,
        )

    # -- settings ------------------------------------------------------------------------

    async def settings(self, request: Request) -> Response:
        web = self.web
        session = session_of(request)
        error: str | None = None
        echo: dict[str, Any] | None = None
        if request.method == "POST":
            form = await request.form()
            try:
                await web.run(
                    entities.update_settings,
                    web.engine,
                    webforms.settings(form),
                    actor=f"user {request.scope['clickloop_user'].username}",
                )
                await web.on_change()
                return web.redirect(request, session, "/settings", "Settings saved.")
            except InvalidInput as exc:
                error = str(exc)
                echo = {key: str(value) for key, value in form.items()}
        return await self._settings_page(request, session, error=error, echo=echo)

    async def _settings_page(
        self,
        request: Request,
        session: Session,
        *,
        error: str | None = None,
        echo: dict[str, Any] | None = None,
        password_error: str | None = None,
        type_error: str | None = None,
        token_error: str | None = None,
        new_token: str | None = None,
    ) -> Response:
        web = self.web
        settings = await web.run(entities.get_settings, web.engine)
        types = await web.run(postbacks.list_conversion_types, web.engine)
        failed = error or password_error or type_error or token_error
        return web.render(
            request,
            session,
            "settings.html",
            status=422 if failed else 200,
            section="settings",
            settings=settings,
            text=echo or webforms.settings_text(settings),
            types=types,
            answer_statuses=[str(s) for s in entities.ANSWER_STATUSES],
            postback_url=templates.network_postback_url(
                web.base_url, settings["postback_key"], "subid={subid}&status={status}"
            ),
            error=error,
            password_error=password_error,
            type_error=type_error,
            token_error=token_error,
            new_token=new_token,
            api_tokens=await web.run(tokens.list_tokens, web.engine),
            api_url=f"{web.base_url}/api/v1",
            default_base=web.base_url,
            timezones=sorted(zones()),
        )

    async def create_token(self, request: Request) -> Response:
        form = await request.form()
        session = session_of(request)
        try:
            token = await self.web.run(
                tokens.create_token,
                self.web.engine,
                name=str(form.get("name", "")),
                now=datetime.now(UTC),
                role=str(form.get("role") or "admin"),
            )
        except InvalidInput as exc:
            return await self._settings_page(request, session, token_error=exc.reason)
        # Shown in this answer only: a redirect would have to carry it in the (signed, not
        # encrypted) session cookie.
        return await self._settings_page(request, session, new_token=token)

    async def revoke_token(self, request: Request) -> Response:
        token_id = int(request.path_params["id"])
        await self.web.run(tokens.revoke_token, self.web.engine, token_id)
        return self.web.redirect(
            request, session_of(request), "/settings", f"API token {token_id} revoked."
        )

    async def rotate_key(self, request: Request) -> Response:
        await self.web.run(
            entities.rotate_postback_key,
            self.web.engine,
            actor=f"user {request.scope['clickloop_user'].username}",
        )
        await self.web.on_change()
        return self.web.redirect(
            request,
            session_of(request),
            "/settings",
            "Postback key rotated: the previous postback URLs no longer work.",
        )

    async def add_type(self, request: Request) -> Response:
        form = await request.form()
        session = session_of(request)
        try:
            name = await self.web.run(
                postbacks.add_conversion_type,
                self.web.engine,
                str(form.get("name", "")),
                label=str(form.get("label", "")),
                now=datetime.now(UTC),
            )
        except (InvalidInput, Conflict) as exc:
            return await self._settings_page(request, session, type_error=str(exc))
        await self.web.on_change()
        return self.web.redirect(request, session, "/settings", f"Conversion type {name} added.")

    async def change_password(self, request: Request) -> Response:
        form = await request.form()
        session = session_of(request)
        user = request.scope["clickloop_user"]
        if form.get("new_password") != form.get("repeat_password"):
            return await self._settings_page(
                request, session, password_error="The two new passwords differ."
            )
        try:
            changed = await self.web.run(
                users.change_password,
                self.web.engine,
                user.id,
                str(form.get("current_password", "")),
                str(form.get("new_password", "")),
            )
        except InvalidInput as exc:
            return await self._settings_page(request, session, password_error=exc.reason)
        # The new password ended every session of the user, this one too: open a fresh one.
        session.data["sid"] = await self.web.run(
            sessions.open_session, self.web.engine, changed.id, now=datetime.now(UTC)
        )
        session.dirty = True
        return self.web.redirect(request, session, "/settings", "Password changed.")


@dataclass(frozen=True, slots=True)
class _TemplatedKind:
    """What differs between the traffic source and the affiliate network forms."""

    table: str
    path: str
    saved: str
    parse: Callable[[FormData], dict[str, Any]]
    create: Callable[..., int]
    create_from_template: Callable[..., int]
    template_class: type[TrafficSourceTemplate] | type[AffiliateNetworkTemplate]


@dataclass(frozen=True, slots=True, kw_only=True)
class _TemplatedForm:
    catalog: Catalog
    template: Template | None
    asked: str  # what the picker asked for when it named no single template
    matches: tuple[Template, ...]
    entity: dict[str, Any] | None
    values: dict[str, Any]
    error: str | None


_SOURCES = _TemplatedKind(
    table="traffic_sources",
    path="/traffic-sources",
    saved="Traffic source saved.",
    parse=webforms.traffic_source,
    create=entities.create_traffic_source,
    create_from_template=templates.create_traffic_source_from_template,
    template_class=TrafficSourceTemplate,
)
_NETWORKS = _TemplatedKind(
    table="affiliate_networks",
    path="/affiliate-networks",
    saved="Network saved.",
    parse=webforms.network,
    create=entities.create_affiliate_network,
    create_from_template=templates.create_affiliate_network_from_template,
    template_class=AffiliateNetworkTemplate,
)
