"""The admin UI's core: signed-cookie sessions, CSRF and log-in checks, rendering, and the small
helpers the page modules share (`webentities.py`, `weblogs.py`; routes in `web.py`).

Sessions are a signed cookie (itsdangerous) holding a server-side session's id (services/
sessions.py: logout, a new password or the user's removal ends it) and the CSRF token that every
POST form must echo back.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import html
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from clickloop.domain.secrets import NO_SECRETS, DeclaredSecrets, mask_headers, mask_secrets
from clickloop.errors import InvalidInput, NotFound, StorageUnavailable
from clickloop.http import params
from clickloop.http.weberrors import error_page, page_path
from clickloop.services import entities, masking, sessions, users
from clickloop.services.rate_updates import UpdateSettings
from clickloop.services.report_query import zone_named
from clickloop.services.sessions import SESSION_DAYS

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "clickloop_admin"
SECRET_FILE = "web-session.key"
OUTCOMES = ("accepted", "updated", "duplicate", "ignored")
PAGE_SIZE = 50
HIDDEN = "clickloop_hidden"  # the scope key of the secret values a read-only user never sees
Handler = Callable[[Request], Awaitable[Response]]


# --- sessions -----------------------------------------------------------------------------


def load_secret(data_dir: Path) -> str:
    """The session signing key, made once per data directory (0600), shared by all workers."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = data_dir / f".{SECRET_FILE}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            # link() fails when another worker got there first: its key wins, ours is dropped.
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip()


@dataclass(slots=True)
class Session:
    data: dict[str, Any]
    dirty: bool = False

    @property
    def csrf(self) -> str:
        token = self.data.get("csrf")
        if not isinstance(token, str) or len(token) < 20:
            token = secrets.token_urlsafe(24)
            self.data["csrf"] = token
            self.dirty = True
        return token

    def flash(self, message: str, kind: str = "ok") -> None:
        self.data["flash"] = [kind, message]
        self.dirty = True

    def pop_flash(self) -> tuple[str, str] | None:
        value = self.data.pop("flash", None)
        if value is None:
            return None
        self.dirty = True
        return (str(value[0]), str(value[1]))


@dataclass(slots=True)
class Web:
    """What the pages need: the engine, public base URL, data dir and the config reloader."""

    engine: Engine
    base_url: str
    data_dir: Path
    on_change: Callable[[], Awaitable[None]]
    rates: UpdateSettings = field(default_factory=UpdateSettings)
    env: Environment = field(init=False)
    _serializer: URLSafeTimedSerializer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["money"] = _money
        self.env.filters["amount"] = amount
        self.env.filters["percent"] = percent
        self.env.filters["num"] = _num
        self.env.filters["mask"] = _mask
        self.env.filters["mask_headers"] = _mask_headers
        self.env.filters["local"] = _local
        self.env.filters["plain"] = _plain

    @property
    def serializer(self) -> URLSafeTimedSerializer:
        # Made on the first admin request, so a server nobody logs into writes no key file.
        if self._serializer is None:
            self._serializer = URLSafeTimedSerializer(
                load_secret(self.data_dir), salt="clickloop-admin-session"
            )
        return self._serializer

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return asyncio.to_thread(function, *args, **kwargs)

    async def secrets(self) -> DeclaredSecrets:
        """What the templates declare secret; a page passes it as `secrets` to the mask filter."""
        declared: DeclaredSecrets = await self.run(
            masking.declared_secrets, self.engine, self.data_dir
        )
        return declared

    def session(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE, "")
        if raw:
            try:
                data = self.serializer.loads(raw, max_age=SESSION_DAYS * 86400)
                if isinstance(data, dict):
                    return Session(data)
            except BadSignature:
                pass
        return Session({})

    def save(self, request: Request, response: Response, session: Session) -> Response:
        if session.dirty:
            response.set_cookie(
                COOKIE,
                self.serializer.dumps(session.data),
                max_age=SESSION_DAYS * 86400,
                path=request.scope.get("root_path") or "/",
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https" or self.base_url.startswith("https:"),
            )
        return response

    def render(
        self,
        request: Request,
        session: Session,
        name: str,
        *,
        status: int = 200,
        **context: Any,
    ) -> Response:
        root = request.scope.get("root_path", "")
        body = self.env.get_template(name).render(
            request=request,
            root=root,
            csrf=session.csrf,
            user=context.pop("user", request.scope.get("clickloop_user")),
            flash=session.pop_flash(),
            section=context.pop("section", ""),
            **context,
        )
        hidden: DeclaredSecrets | None = request.scope.get(HIDDEN)
        if hidden is not None:
            # A read-only user's page: every stored secret value goes, wherever it is shown.
            body = hidden.mask_values(body)
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        return self.save(request, response, session)

    def redirect(
        self, request: Request, session: Session, path: str, message: str = ""
    ) -> Response:
        if message:
            session.flash(message)
        root = request.scope.get("root_path", "")
        return self.save(request, RedirectResponse(root + path, status_code=303), session)


SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
}


@pass_context
def _mask_headers(context: Any, headers: dict[str, str] | None) -> list[tuple[str, str]]:
    """The `mask_headers` filter: S2S request headers as shown, credentials masked."""
    return list(mask_headers(headers, context.get("secrets", NO_SECRETS)).items())


@pass_context
def _mask(context: Any, text: str) -> str:
    """The `mask` filter: name patterns, plus the page's `secrets` (see Web.secrets)."""
    return mask_secrets(text, context.get("secrets", NO_SECRETS))


def _money(value: Any) -> str:
    if value is None or value == "":
        return ""
    amount = Decimal(str(value))
    return f"{amount:,.2f}"


CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "RUB": "₽"}


def amount(value: Any, currency: str, places: int = 2) -> str:
    """Money as a buyer reads it: the currency's sign (or code), thousands separators, the
    minus in front: `$1,234.50`, `-€3.10`, `CHF 12.00`; a dash for none."""
    if value is None or value == "":
        return "—"
    number = Decimal(str(value))
    sign = CURRENCY_SIGNS.get(currency)
    digits = f"{abs(number):,.{places}f}"
    shown = f"{sign}{digits}" if sign else f"{currency} {digits}"
    return f"-{shown}" if number < 0 and digits.strip("0.,") else shown


def percent(value: Any) -> str:
    """A ratio in percent with separators (`1,250.00%`, `-100.00%`); a dash for none."""
    if value is None or value == "":
        return "—"
    number = Decimal(str(value))
    return ("-" if number < 0 else "") + f"{abs(number):,.2f}%"


def _local(value: datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _plain(value: Any) -> str:
    """A Decimal for an input field: no exponent, no trailing zeros (0.000000 → 0)."""
    if isinstance(value, Decimal):
        text = f"{value:f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return "" if value is None else str(value)


def _num(value: Any) -> str:
    if value is None:
        return ""
    return f"{int(value):,}"


# --- auth ---------------------------------------------------------------------------------


def hidden_from_analysts(engine: Engine, data_dir: Path) -> DeclaredSecrets:
    """The stored secret values, as they are and as HTML shows them."""
    hidden = masking.hidden_values(engine, data_dir)
    return DeclaredSecrets(values=hidden.values | {html.escape(v) for v in hidden.values})


READ_ONLY_MESSAGE = (
    "Your account is read-only (analyst): it sees reports and logs but changes nothing. "
    "Ask an admin to make this change, or to make you an admin on the Users page."
)


def guard(web: Web, handler: Handler, *, self_service: bool = False) -> Handler:
    """Log-in check, the analyst's refusal of every change (but `self_service` ones: logging
    out, one's own password), CSRF check on POST, and the one place errors become pages."""

    async def guarded(request: Request) -> Response:
        session = web.session(request)
        user = await signed_in_user(web, session)
        if user is None:
            target = request.url.path.removeprefix(request.scope.get("root_path", ""))
            if request.method == "GET" and request.url.query:
                target += "?" + request.url.query
            query = urlencode({"next": target}) if target not in ("", "/") else ""
            return web.redirect(request, session, "/login" + (f"?{query}" if query else ""))
        request.scope["clickloop_user"] = user
        if request.method not in ("GET", "HEAD") and not user.can_change and not self_service:
            log.warning(
                "admin %s %s refused: user %r is read-only",
                request.method,
                request.url.path,
                user.username,
            )
            return error_page(web, request, session, status=403, message=READ_ONLY_MESSAGE)
        if request.method == "POST":
            form = await request.form()
            if not same_token(str(form.get("csrf", "")), session.data.get("csrf")):
                return refused(web, request, session)
        request.scope["clickloop_session"] = session
        if not user.can_change:
            request.scope[HIDDEN] = await web.run(hidden_from_analysts, web.engine, web.data_dir)
        try:
            # The API's rule: PostgreSQL text cannot hold NUL, so no lookup ever gets one.
            params.refuse_nul(request.query_params.multi_items())
            return await handler(request)
        except NotFound as exc:
            found = str(exc)
            message = f"{found[:1].upper()}{found[1:]}. It was removed, or the link is mistyped."
            return error_page(web, request, session, status=404, message=message)
        except InvalidInput as exc:
            # A page's filter (form handlers catch what their forms can get wrong themselves).
            if request.method != "GET":
                message = (
                    f"The value of “{exc.field}” is invalid: {exc.reason}. Go back to the form, "
                    "correct it and send it again."
                )
                return error_page(web, request, session, status=422, message=message)
            return error_page(
                web,
                request,
                session,
                status=422,
                message=f"The filter “{exc.field}” is invalid: {exc.reason}. Change it and "
                "filter again, or show this page without filters.",
                back=(page_path(request), "Show this page without filters"),
            )
        except DataError:
            log.warning(
                "admin %s %s: value refused by the database", request.method, request.url.path
            )
            return error_page(
                web,
                request,
                session,
                status=422,
                message="A value in this request cannot be stored or searched for (too long, "
                "or characters the database does not take). Change it and try again.",
            )

    return storage_safe(web, guarded)


def storage_safe(web: Web, handler: Handler) -> Handler:
    """`handler`, but a storage failure (the database down, or its lock held past the busy
    timeout) answers the 503 page, never a 500: the pages behind `guard` and the login."""

    async def safe(request: Request) -> Response:
        try:
            return await handler(request)
        except (StorageUnavailable, SQLAlchemyError) as exc:
            log.warning("admin %s %s: storage error: %s", request.method, request.url.path, exc)
            again = request.method == "GET"
            return error_page(
                web,
                request,
                web.session(request),
                status=503,
                message="The database is unavailable right now. "
                + ("Try again in a moment." if again else "Send the form again in a moment."),
                again=again,
            )

    return safe


def same_token(given: str, expected: Any) -> bool:
    return isinstance(expected, str) and bool(expected) and hmac.compare_digest(given, expected)


async def signed_in_user(web: Web, session: Session) -> users.User | None:
    """The user of the session's live server-side session, or None (not logged in)."""
    session_id = session.data.get("sid")
    if not isinstance(session_id, str):
        return None
    user: users.User | None = await web.run(
        sessions.session_user, web.engine, session_id, now=datetime.now(UTC)
    )
    return user


def refused(web: Web, request: Request, session: Session) -> Response:
    return error_page(
        web,
        request,
        session,
        status=403,
        message="This form expired or did not come from this site. Reload the page and retry.",
    )


def session_of(request: Request) -> Session:
    session: Session = request.scope["clickloop_session"]
    return session


def safe_next(value: str | None) -> str:
    # Only a path inside the admin: never an absolute URL (open redirect) or "//host".
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


# --- helpers ------------------------------------------------------------------------------


def zone_of(settings: dict[str, Any]) -> ZoneInfo:
    """The settings' time zone; one that no longer loads (say, tzdata without it) is an error
    naming the setting, never a silent UTC."""
    return zone_named(str(settings.get("timezone") or "UTC"), "timezone")


def names_by_id(web: Web, table_name: str) -> dict[int, str]:
    return {row["id"]: row["name"] for row in entities.list_rows(web.engine, table_name)}


def bar_chart(values: list[Decimal | int], labels: list[str]) -> dict[str, Any]:
    """Bar geometry for an inline SVG (viewBox 0 0 600 160), computed here, drawn by Jinja."""
    width, height, top = 600.0, 140.0, 10.0
    top_value = max(values, default=0)
    peak = float(top_value) or 1.0
    step = width / max(len(values), 1)
    bars = []
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        h = max(float(value), 0.0) / peak * height
        bars.append(
            {
                "x": round(index * step + step * 0.15, 1),
                "y": round(top + height - h, 1),
                "w": round(step * 0.7, 1),
                "h": round(h, 1),
                "title": f"{label}: {value}",
            }
        )
    return {
        "bars": bars,
        "peak": _money(top_value) if isinstance(top_value, Decimal) else f"{top_value:,}",
        "first": labels[0] if labels else "",
        "last": labels[-1] if labels else "",
    }


def next_url(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    query = {k: v for k, v in request.query_params.items() if k != "cursor"}
    return "?" + urlencode({**query, "cursor": cursor})


@functools.cache
def zones() -> frozenset[str]:
    """IANA zone names (read from disk once: the scan takes tens of milliseconds)."""
    return frozenset(available_timezones())
