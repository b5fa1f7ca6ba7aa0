"""The users page: every user with role and state; add, disable, enable, change the role, reset
the password (services/users.py, the same rules as `clickloop user`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.http.webcore import Web, session_of
from clickloop.services import users


class UserPages:
    def __init__(self, web: Web) -> None:
        self.web = web

    async def users(self, request: Request) -> Response:
        """The list (GET), or a user added (POST)."""
        if request.method == "POST":
            return await self._create(request)
        web = self.web
        rows = await web.run(users.list_users, web.engine, now=datetime.now(UTC))
        return web.render(
            request,
            session_of(request),
            "users.html",
            section="users",
            users=rows,
            roles=users.ROLES,
            me=request.scope["clickloop_user"],
        )

    async def _create(self, request: Request) -> Response:
        form = await request.form()
        username = str(form.get("username", "")).strip()
        return await self._act(
            request,
            lambda: users.create_user(
                self.web.engine,
                username,
                str(form.get("password", "")),
                now=datetime.now(UTC),
                role=str(form.get("role", "")),
            ),
            f"User {username} added: they can log in now.",
        )

    async def disable(self, request: Request) -> Response:
        user_id = request.path_params["id"]
        return await self._act(
            request,
            lambda: users.disable_user(self.web.engine, user_id, now=datetime.now(UTC)),
            "User disabled: their sessions ended and they cannot log in.",
        )

    async def enable(self, request: Request) -> Response:
        user_id = request.path_params["id"]
        return await self._act(
            request,
            lambda: users.enable_user(self.web.engine, user_id),
            "User enabled: they can log in again.",
        )

    async def change_role(self, request: Request) -> Response:
        role = str((await request.form()).get("role", ""))
        user_id = request.path_params["id"]
        return await self._act(
            request,
            lambda: users.set_role(self.web.engine, user_id, role),
            f"Role changed to {role.strip().lower()}.",
        )

    async def reset_password(self, request: Request) -> Response:
        password = str((await request.form()).get("password", ""))
        user_id = request.path_params["id"]
        return await self._act(
            request,
            lambda: users.reset_password(self.web.engine, user_id, password),
            "Password reset: the user's sessions ended; give them the new password.",
        )

    async def _act(self, request: Request, action: Callable[[], Any], message: str) -> Response:
        """Run a change; back to the list with what happened, or why not."""
        session = session_of(request)
        try:
            await self.web.run(action)
        except (InvalidInput, Conflict, NotFound) as exc:
            session.flash(f"Not done: {exc}.", "error")
            return self.web.redirect(request, session, "/users")
        return self.web.redirect(request, session, "/users", message)
