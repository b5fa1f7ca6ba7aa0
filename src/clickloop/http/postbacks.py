"""The postback endpoint `GET|POST /{postback_key}/postback`: parse in the event loop, apply and
log through the group-commit writer, answer once the effect and its log row are durable.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from datetime import UTC, datetime

from prometheus_client import Counter
from sqlalchemy.engine import Connection, Engine

from clickloop.domain.clicks import first_header_address
from clickloop.domain.postbacks import MAX_BODY_BYTES, Outcome, answer_postback
from clickloop.errors import StorageUnavailable
from clickloop.http.metrics import Tally
from clickloop.http.responses import (
    NO_STORE,
    Receive,
    Scope,
    Send,
    header,
    send_response,
    send_text,
)
from clickloop.http.tracking import SUBID_COOKIE
from clickloop.logs import Outage
from clickloop.services.config import TrackerConfig
from clickloop.services.postback_batches import PendingPostback, process_postbacks
from clickloop.services.postbacks import (
    COOKIE_HEADER,
    PostbackResult,
    PostbackRules,
    RawPostback,
    load_rules,
    parse_raw,
)
from clickloop.storage.writer import GroupCommitWriter

log = logging.getLogger(__name__)

POSTBACKS = Counter("clickloop_postbacks_total", "Postback requests by outcome", ["outcome"])
_COUNTERS: dict[str, Tally] = {}  # POSTBACKS by outcome: labels() costs more than inc()
RETRY_AFTER = (b"retry-after", b"5")
NOSNIFF = (b"x-content-type-options", b"nosniff")
# Request headers kept in the received-postback log (the rest is noise or secrets).
_KEPT_HEADERS = (b"user-agent", b"referer", b"origin", b"x-forwarded-for", b"x-real-ip")
_READ_HEADERS = frozenset({*_KEPT_HEADERS, b"cookie", b"content-type"})


class PostbackHandler:
    """Serves the postback endpoint with rules cached per configuration version."""

    def __init__(
        self,
        engine: Engine,
        writer: GroupCommitWriter,
        *,
        trusted_proxy_header: str,
        timeout: float | None = None,
        outage: Outage,
    ) -> None:
        """`timeout`: how long a request waits for the rules to load from the database."""
        self._engine = engine
        self._outage = outage
        self._timeout = timeout
        self._writer = writer
        self._proxy_header = trusted_proxy_header.lower().encode()
        self._rules: PostbackRules | None = None
        self._reload = asyncio.Lock()
        # Postbacks waiting for a writer job; the writer thread takes them (hence the lock).
        self._lock = threading.Lock()
        self._pending: list[tuple[PendingPostback, asyncio.Future[PostbackResult]]] = []
        self._job_waiting = False  # a job is queued that has not taken the pending ones yet
        self._jobs: set[asyncio.Task[None]] = set()

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, config: TrackerConfig, key: str
    ) -> None:
        if not hmac.compare_digest(key.encode(), config.postback_key.encode()):
            _count("wrong_key")
            await send_text(send, 404, "Not Found")
            return
        method = scope["method"]
        if method not in ("GET", "POST"):
            await send_text(send, 405, "Method Not Allowed", [(b"allow", b"GET, POST")])
            return
        body = await read_body(receive) if method == "POST" else b""
        if body is None:  # the client left (or was cut off) before its whole body arrived
            _count("incomplete")
            return
        now = datetime.now(UTC)
        raw = self._raw(scope, method, body, now)
        try:
            rules = await self._current_rules(config.version)
            result = await self._process(raw, rules, now)
        except StorageUnavailable as exc:
            _count("storage_unavailable")
            self._outage.failed(exc)
            await send_text(send, 503, "Temporarily unavailable", [RETRY_AFTER])
            return
        if self._outage.down:
            self._outage.recovered()
        _count(result.outcome.value)
        answer = answer_postback(
            result.outcome,
            reason=result.reason,
            silent=result.silent,
            return_text=result.answer,
            ignored_status_code=rules.ignored_status_code,
        )
        await send_response(
            send,
            answer.status,
            answer.body,
            [(b"content-type", answer.content_type.encode()), NO_STORE, NOSNIFF],
        )

    async def _process(
        self, raw: RawPostback, rules: PostbackRules, now: datetime
    ) -> PostbackResult:
        """Queue the postback for the next writer job; many requests share one job and commit."""
        pending = PendingPostback(raw=raw, rules=rules, parsed=parse_raw(raw, rules))
        future: asyncio.Future[PostbackResult] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._pending.append((pending, future))
            submit, self._job_waiting = not self._job_waiting, True
        if submit:
            task = asyncio.ensure_future(self._run_job())
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
        result = await future
        if result.outcome is Outcome.IGNORED:
            subid = pending.parsed.subid
            log.info("postback %d ignored: %s (subid %r)", result.log_id, result.reason, subid)
        return result

    def _take(self) -> list[tuple[PendingPostback, asyncio.Future[PostbackResult]]]:
        with self._lock:
            taken, self._pending, self._job_waiting = self._pending, [], False
        return taken

    async def _run_job(self) -> None:
        """One writer job that takes, when the writer starts it, every postback pending then.

        Under load a job thus holds all that arrived while the previous commit ran (rather than
        one event-loop iteration's worth), and the batch's set-based reads and writes serve many
        postbacks each.
        """
        taken: list[tuple[PendingPostback, asyncio.Future[PostbackResult]]] | None = None
        now = datetime.now(UTC)

        def work(conn: Connection) -> list[PostbackResult]:
            nonlocal taken, now
            if taken is None:  # a job the writer retries runs the postbacks it took again
                taken = self._take()
                now = datetime.now(UTC)
            return process_postbacks(conn, [pending for pending, _ in taken], now=now)

        failure: BaseException = StorageUnavailable("postback batch did not complete")
        try:
            results: list[PostbackResult] = await self._writer.run(work)
            assert taken is not None
            for (_, future), result in zip(taken, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as exc:
            failure = exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(str(exc))
        finally:
            if taken is None:  # the writer never ran the job: its postbacks are still pending
                taken = self._take()
            # Whatever happened, no request may wait forever: the rest get a 503.
            for _, future in taken:
                if not future.done():
                    future.set_exception(failure)

    async def _current_rules(self, version: int) -> PostbackRules:
        rules = self._rules
        if rules is not None and rules.version == version:
            return rules
        async with self._reload:
            rules = self._rules
            if rules is None or rules.version != version:
                try:
                    rules = await asyncio.wait_for(
                        asyncio.to_thread(self._load_rules), self._timeout
                    )
                except StorageUnavailable:
                    raise
                except TimeoutError as exc:
                    raise StorageUnavailable("the database did not answer in time") from exc
                except Exception as exc:
                    raise StorageUnavailable(f"cannot load postback rules: {exc}") from exc
                self._rules = rules
            return rules

    def _load_rules(self) -> PostbackRules:
        with self._engine.connect() as conn:
            return load_rules(conn)

    def _raw(self, scope: Scope, method: str, body: bytes, now: datetime) -> RawPostback:
        headers: dict[str, str] = {}
        # One pass over the request headers; the first value of each name counts.
        first: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _READ_HEADERS and name not in first:
                first[name] = bytes(value).replace(b"\x00", b"")
        for name in _KEPT_HEADERS:
            kept = first.get(name)
            if kept:
                headers[name.decode()] = _text(kept)[:500]
        cookie = _cookie(first.get(b"cookie", b"").decode("latin-1"), SUBID_COOKIE)
        if cookie:
            headers[COOKIE_HEADER] = cookie[:64]
        return RawPostback(
            received_at=now,
            method=method,
            query=_text(scope["query_string"]),
            body=_text(body),
            content_type=first.get(b"content-type", b"").decode("latin-1")[:200],
            remote_ip=self._client_ip(scope),
            headers=headers,
        )

    def _client_ip(self, scope: Scope) -> str | None:
        if self._proxy_header:
            forwarded = header(scope, self._proxy_header)
            if forwarded:
                return first_header_address(forwarded)
        client = scope.get("client")
        return str(client[0])[:45] if client else None


def _count(outcome: str) -> None:
    counter = _COUNTERS.get(outcome)
    if counter is None:
        counter = _COUNTERS[outcome] = Tally(POSTBACKS.labels(outcome))
    counter.inc()


async def read_body(receive: Receive) -> bytes | None:
    """The request body up to the limit, the rest read and dropped; None if it never ends."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        if size < MAX_BODY_BYTES:
            chunks.append(chunk[: MAX_BODY_BYTES - size])
            size += len(chunks[-1])
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _text(data: bytes) -> str:
    """Request bytes as storable text: UTF-8 (invalid bytes replaced), without NUL."""
    return data.decode("utf-8", "replace").replace("\x00", "")


def _cookie(cookie_header: str, name: str) -> str:
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip()
    return ""
