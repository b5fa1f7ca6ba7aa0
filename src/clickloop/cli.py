"""The `clickloop` command: the composition root that reads settings and wires the layers.

Exit codes: 0 success, 1 a clickloop error (message on stderr), 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickloop.commands import (
    adplatform_commands,
    backup,
    entities,
    output,
    records,
    settings_commands,
)
from clickloop.commands.common import Handler
from clickloop.commands.common import engine as _engine
from clickloop.commands.common import now as _now
from clickloop.commands.common import ready_engine as _ready_engine
from clickloop.commands.common import utc_time as _utc_time
from clickloop.domain.deliveries import DeliveryState
from clickloop.errors import ClickloopError, ConfigError
from clickloop.settings import Settings, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    for option in ("data_dir", "database_url", "port", "host", "workers"):
        value = getattr(args, option, None)
        if value is not None:
            # Uvicorn's worker processes rebuild settings from the environment, so carry it there.
            os.environ[f"CLICKLOOP_{option.upper()}"] = str(value)
    settings: Settings | None = None
    try:
        settings = load_settings(os.environ)
        result: int = args.handler(args, settings)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        return result
    except ClickloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader left (`clickloop … | head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback for the user; the log level can ask for one
        if settings is not None and settings.log_level.lower() == "debug":
            traceback.print_exc()
        print(f"error: {_unexpected(exc)}", file=sys.stderr)
        return 1


def _unexpected(exc: Exception) -> str:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return f"the database is unavailable or refused the request ({type(exc.orig).__name__})"
    return (
        f"unexpected {type(exc).__name__}: {exc} "
        "(CLICKLOOP_LOG_LEVEL=debug shows where; please report it)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clickloop", description="Self-hosted conversion tracker."
    )
    parser.add_argument("--version", action="version", version=f"clickloop {_version()}")
    parser.add_argument(
        "--data-dir", help="data directory (env CLICKLOOP_DATA_DIR, default ./data)"
    )
    parser.add_argument(
        "--database-url", help="sqlite:///PATH or postgresql://… (env CLICKLOOP_DATABASE_URL)"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, parent: Any = commands) -> Any:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    init = command("init", _init, "create the data directory and database, ready to serve")
    init.add_argument("--demo", action="store_true", help="also create a demo campaign")

    serve = command("serve", _serve, "run the tracker's HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="server processes (default 1)")

    command("worker", _worker, "run the S2S dispatcher (also runs inside serve by default)")
    deliveries = commands.add_parser("deliveries", help="the sent-postback log").add_subparsers(
        metavar="ACTION"
    )
    listing = command("list", _deliveries_list, "list deliveries, newest first", deliveries)
    listing.add_argument("--state", choices=[str(state) for state in DeliveryState])
    listing.add_argument("--conversion", type=int, help="only this conversion's deliveries")
    listing.add_argument("--subid", help="only deliveries triggered by this click's conversions")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--attempts", action="store_true", help="with every attempt")
    output.add_format_option(listing)
    resend = command("resend", _deliveries_resend, "send deliveries again now", deliveries)
    resend.add_argument("ids", type=int, nargs="+")
    rerender_help = (
        "render the request again from the current configuration and the stored click and "
        "conversion (the old delivery is superseded) instead of sending it as stored"
    )
    resend.add_argument("--rerender", action="store_true", help=rerender_help)
    resend_failed = command(
        "resend-failed", _deliveries_resend_failed, "send every failed delivery again", deliveries
    )
    resend_failed.add_argument(
        "--since", type=_utc_time, help="only those created at or after (ISO 8601; UTC if no zone)"
    )
    resend_failed.add_argument("--rerender", action="store_true", help=rerender_help)

    prune = command(
        "prune",
        _prune,
        "delete raw clicks of whole UTC days older than a number of days (conversions, postback "
        "logs and report aggregates stay)",
    )
    prune.add_argument(
        "--clicks-older-than", type=_days, required=True, metavar="DAYS", help="e.g. 90d"
    )
    prune.add_argument("--dry-run", action="store_true", help="show what would go; delete nothing")

    db = commands.add_parser("db", help="database migrations").add_subparsers(metavar="ACTION")
    command("upgrade", _db_upgrade, "apply all pending migrations", db)

    key = commands.add_parser("postback-key", help="the postback key").add_subparsers(
        metavar="ACTION"
    )
    command("show", _postback_key_show, "print the postback key and the postback URL", key)
    command("rotate", _postback_key_rotate, "replace the postback key (old URLs stop working)", key)

    token = commands.add_parser("token", help="admin API tokens").add_subparsers(metavar="ACTION")
    created = command("create", _token_create, "create a token and print it (shown once)", token)
    created.add_argument("name")
    created.add_argument("--role", default="admin", help=ROLE_HELP)
    output.add_format_option(command("list", _token_list, "list tokens, never their values", token))
    command("revoke", _token_revoke, "revoke a token by id", token).add_argument("id", type=int)
    _add_user_commands(command, commands)

    importer = command(
        "import",
        _import,
        "import entities (JSON or YAML), or `import conversions FILE` (subid,payout,tid,status)",
    )
    importer.add_argument("file", type=Path)
    importer.add_argument("conversions_file", type=Path, nargs="?", help="after `conversions`")
    importer.add_argument(
        "--dry-run", action="store_true", help="show what would change; write nothing"
    )
    _add_postback_commands(command, commands)
    _add_export_commands(command, commands)
    _add_report_commands(command, commands)

    groups = entities.register(commands, command)
    adplatform_commands.register(groups, command)
    for kind in ("traffic-sources", "affiliate-networks"):
        _add_template_options(command, groups[kind], kind)
    settings_commands.register(commands, command)
    records.register(commands, command)
    backup.register(commands, command)

    templates = commands.add_parser("templates", help="the template catalog").add_subparsers(
        metavar="ACTION"
    )
    command("list", _templates_list, "list templates (key, kind, name, flags)", templates)
    show = command(
        "show", _templates_show, "print a template as JSON, with where it came from", templates
    )
    show.add_argument("key")
    search = command(
        "search", _templates_search, "find templates by key, name or domain", templates
    )
    search.add_argument("text")
    validate = command(
        "validate",
        _templates_validate,
        "check a templates file (JSON or YAML) and render its URLs for a sample click",
        templates,
    )
    validate.add_argument("file", type=Path)
    return parser


def _add_template_options(command: Any, sub: Any, kind: str) -> None:
    create = command("create", _create_from_template, f"create one of {kind} from a template", sub)
    create.add_argument("--template", required=True, help="template key (clickloop templates)")
    create.add_argument("--name", help="entity name (default: the template's name)")
    reapply = command("reapply", _reapply_template, "overwrite it with its template now", sub)
    reapply.add_argument("id", type=int)
    reapply.add_argument("--template", help="another template key than the one it came from")
    reapply.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    for action in (create, reapply):
        action.add_argument(
            "--field", action="append", default=[], metavar="NAME=VALUE", help="template field"
        )
        action.set_defaults(kind=kind)


def _days(text: str) -> int:
    """A number of days from the command line: `90d` or `90`."""
    digits = text.removesuffix("d")
    if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= 100_000:
        raise argparse.ArgumentTypeError(f"not a number of days such as 90d: {text!r}")
    return int(digits)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clickloop")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _init(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import ensure_settings
    from clickloop.storage.db import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = _engine(settings)
    upgrade(engine)
    ensure_settings(engine)
    print(f"database ready: {_display_url(settings.effective_database_url)}")
    if args.demo:
        from clickloop.services.demo import ensure_demo_campaign

        link = ensure_demo_campaign(engine, base_url=settings.base_url, now=_now())
        print(f"demo campaign link: {link}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import functools

    _metrics_directory(settings)
    import uvicorn

    from clickloop.http.protocol import ConnectionLimits, OneWriteProtocol

    log_config = _logging_config(settings)
    _ready_engine(settings).dispose()
    print(f"clickloop serving on {settings.base_url}", flush=True)
    uvicorn.run(
        "clickloop.cli:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        loop="uvloop",
        # A partial of a module-level class: worker processes get it pickled.
        http=functools.partial(  # type: ignore[arg-type]
            OneWriteProtocol,
            limits=ConnectionLimits(
                request_timeout=settings.request_timeout_seconds,
                max_connections=settings.max_connections,
            ),
        ),
        lifespan="on",
        access_log=settings.access_log,
        log_config=log_config,
        server_header=False,
        date_header=False,
    )
    return 0


def _metrics_directory(settings: Settings) -> None:
    """prometheus_client's multiprocess mode for this run's server processes: one directory,
    emptied first (a previous run's files would be summed in), named before they import it."""
    import shutil

    directory = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def app_factory() -> Any:
    """Build the ASGI app in each server process (uvicorn calls this)."""
    from clickloop.http.app import create_app

    settings = load_settings(os.environ)
    engine = _ready_engine(settings)
    from clickloop.services.retention import run_maintenance

    async def maintain(app: Any) -> None:
        await run_maintenance(app.engine, retention_days=settings.retention_days)

    background: tuple[Any, ...] = (maintain,)
    if settings.embedded_worker:
        from clickloop.sender.dispatcher import run_until_cancelled

        limits = _s2s_limits(settings)

        async def dispatch(app: Any) -> None:
            await run_until_cancelled(app.engine, limits=limits)

        background += (dispatch,)
    if settings.rates_auto_update:
        from clickloop.services.rate_updates import run_scheduled_updates

        async def update_rates(app: Any) -> None:
            await run_scheduled_updates(
                app.engine, url=settings.rates_url, timeout=settings.rates_timeout_seconds
            )

        background += (update_rates,)
    return create_app(settings, engine, background=background, log_filter=_masked_logs())


def _masked_logs() -> Any:
    """Send every log line of this process through the secret masking filter (on the handler
    that `_logging_config` sets up); the filter is returned so that whoever knows the
    configuration can give it the declared secrets."""
    import logging

    from clickloop.domain.secrets import SecretMaskingFilter

    masking = SecretMaskingFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(masking)
    return masking


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import logging.config

    from clickloop.sender.dispatcher import run_worker
    from clickloop.services.masking import log_secrets

    logging.config.dictConfig(_logging_config(settings))
    engine = _ready_engine(settings)
    _masked_logs().declared = log_secrets(engine, settings.data_dir)
    return run_worker(engine, limits=_s2s_limits(settings))


def _logging_config(settings: Settings) -> dict[str, Any]:
    from clickloop.logs import logging_config

    return logging_config(
        level=settings.log_level, log_format=settings.log_format, access_log=settings.access_log
    )


def _s2s_limits(settings: Settings) -> Any:
    from datetime import timedelta

    import aiohttp

    from clickloop.sender.dispatcher import Limits

    concurrency = max(1, settings.s2s_concurrency)
    per_host = max(1, settings.s2s_per_host)
    per_host_held = 8 * per_host  # a host's claims in memory: a few rounds of its requests
    try:
        return Limits(
            concurrency=concurrency,
            per_host=per_host,
            per_host_held=per_host_held,
            held=max(2048, 4 * concurrency, per_host_held),
            batch=min(256, per_host_held // 2 or 1),
            lease=timedelta(seconds=settings.s2s_lease_seconds),
            timeout=aiohttp.ClientTimeout(
                total=settings.s2s_total_timeout_seconds,
                sock_connect=settings.s2s_connect_timeout_seconds,
            ),
        )
    except ValueError as exc:
        raise ConfigError(f"S2S settings: {exc}") from exc


def _deliveries_list(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.masking import declared_secrets
    from clickloop.services.queries import (
        list_attempts,
        list_deliveries,
        shown_attempt,
        shown_delivery,
    )

    engine = _ready_engine(settings)
    declared = declared_secrets(engine, settings.data_dir)
    page = list_deliveries(
        engine,
        state=args.state,
        conversion_id=args.conversion,
        subid=args.subid,
        limit=args.limit,
    )
    items = []
    for row in page.items:
        item = shown_delivery(row, declared)
        if args.attempts:
            attempts = list_attempts(engine, row["id"])
            item["attempts_log"] = [shown_attempt(attempt, declared) for attempt in attempts]
        items.append(item)
    columns = ("id", "created_at", "state", "attempts", "subid", "url", "last_error")
    output.print_rows(args, items, columns, empty="no deliveries match")
    return 0


def _deliveries_resend(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.deliveries import resend

    resent = resend(_ready_engine(settings), args.ids, now=_now(), rerender=args.rerender)
    for old, new in resent.queued.items():
        if new != old:
            print(f"delivery {old}: rendered again as delivery {new} ({old} superseded)")
    for skipped, reason in resent.skipped.items():
        print(f"delivery {skipped}: not queued: {reason}", file=sys.stderr)
    print(f"requeued {len(resent.queued)} of {len(set(args.ids))}")
    return 1 if resent.skipped else 0


def _deliveries_resend_failed(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.deliveries import resend_failed

    count = resend_failed(
        _ready_engine(settings), now=_now(), since=args.since, rerender=args.rerender
    )
    print(f"requeued {count} failed deliveries" + (", rendered again" if args.rerender else ""))
    return 0


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from clickloop.services import retention

    engine = _ready_engine(settings)
    plan = retention.plan_prune(engine, retention.horizon(_now(), args.clicks_older_than))
    what = f"{plan.clicks} clicks created before {plan.horizon:%Y-%m-%d} (UTC)"
    if plan.partitions:
        days = [day for day, _ in plan.partitions]
        what += f", the day partitions {days[0]} to {days[-1]}"
    if args.dry_run:
        print(f"would delete {what}")
        return 0
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("deleting clicks", total=plan.clicks)
        for removed in retention.prune(engine, plan):
            progress.advance(task, removed)
    print(f"deleted {what}")
    retention.refresh_statistics(engine)
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.storage.db import upgrade

    upgrade(_engine(settings))
    print("database is at the latest revision")
    return 0


def _postback_key_show(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import get_settings

    key = get_settings(_ready_engine(settings))["postback_key"]
    print(key)
    print(f"postback URL: {settings.base_url}/{key}/postback?subid={{subid}}&status={{status}}")
    return 0


def _postback_key_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import rotate_postback_key

    key = rotate_postback_key(_ready_engine(settings))
    print(key)
    print("the previous key no longer works: give the new postback URL to your networks")
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    if args.conversions_file is not None or str(args.file) == "conversions":
        return _import_conversions(args, settings)
    from clickloop.services.importer import import_document, read_document
    from clickloop.services.templates import load_user_catalog

    results = import_document(
        _ready_engine(settings),
        read_document(args.file),
        now=_now(),
        catalog=load_user_catalog(settings.data_dir),
        dry_run=args.dry_run,
    )
    for result in results:
        print(f"{result.action} {result.section}: {result.name}")
    counts = Counter(result.action for result in results)
    summary = ", ".join(f"{counts[a]} {a}" for a in ("created", "updated", "unchanged"))
    print(f"{summary}{' (dry run: nothing written)' if args.dry_run else ''}")
    return 0


def _token_create(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.tokens import create_token

    print(create_token(_ready_engine(settings), name=args.name, now=_now(), role=args.role))
    return 0


def _token_list(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.tokens import list_tokens

    rows = list_tokens(_ready_engine(settings))
    columns = ("id", "name", "role", "created_at", "last_used_at")
    output.print_rows(args, rows, columns, empty="no tokens")
    return 0


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.tokens import revoke_token

    revoke_token(_ready_engine(settings), args.id)
    print(f"token {args.id} revoked")
    return 0


ROLE_HELP = "admin (may change everything, the default) or analyst (reads, changes nothing)"


def _add_user_commands(command: Any, commands: Any) -> None:
    user = commands.add_parser("user", help="web UI users").add_subparsers(metavar="ACTION")
    for name, handler, text in (
        ("create", _user_create, "create a web UI user (password prompted)"),
        ("password", _user_password, "reset a user's password (prompted); ends their sessions"),
    ):
        action = command(name, handler, text, user)
        action.add_argument("username")
        action.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        if name == "create":
            action.add_argument("--role", default="admin", help=ROLE_HELP)
    output.add_format_option(command("list", _user_list, "list users, roles and states", user))
    for name, handler, text in (
        ("disable", _user_disable, "stop a user logging in and end their sessions at once"),
        ("enable", _user_enable, "let a disabled user log in again"),
        ("remove", _user_remove, "remove a web UI user and end their sessions"),
    ):
        command(name, handler, text, user).add_argument("username")
    role = command("role", _user_role, "make a user an admin or an analyst", user)
    role.add_argument("username")
    role.add_argument("role", help=ROLE_HELP)


def _user_list(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from clickloop.services.users import list_users

    rows = [
        {**asdict(row), "state": "disabled" if row.disabled_at else "active"}
        for row in list_users(_ready_engine(settings), now=_now())
    ]
    columns = ("id", "username", "role", "state", "sessions", "created_at", "disabled_at")
    output.print_rows(args, rows, columns, empty="no users")
    return 0


def _user_disable(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.users import disable_user, find_user

    engine = _ready_engine(settings)
    disable_user(engine, find_user(engine, args.username).id, now=_now())
    print(f"user {args.username} disabled; their sessions ended")
    return 0


def _user_enable(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.users import enable_user, find_user

    engine = _ready_engine(settings)
    enable_user(engine, find_user(engine, args.username).id)
    print(f"user {args.username} enabled")
    return 0


def _user_role(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.users import find_user, set_role

    engine = _ready_engine(settings)
    set_role(engine, find_user(engine, args.username).id, args.role)
    print(f"user {args.username} is now {args.role.strip().lower()}")
    return 0


def _user_remove(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.users import remove_user

    remove_user(_ready_engine(settings), args.username)
    print(f"user {args.username} removed")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise ConfigError("the two passwords differ")
    return password


def _user_create(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.users import create_user

    engine = _ready_engine(settings)
    password = _read_password(args)
    user_id = create_user(engine, args.username, password, now=_now(), role=args.role)
    print(f"user {args.username} created (id {user_id}); log in at {settings.base_url}/admin/")
    return 0


def _user_password(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.users import set_password

    set_password(_ready_engine(settings), args.username, _read_password(args))
    print(f"password of {args.username} changed")
    return 0


def _template_line(template: Any) -> str:
    from clickloop.catalog.templates import TrafficSourceTemplate

    kind = "traffic-source" if isinstance(template, TrafficSourceTemplate) else "network"
    flags = [f"fields: {', '.join(f.name for f in template.fields)}"] if template.fields else []
    if getattr(template, "postback_url", "") is None or (
        getattr(template, "postback_params", "") is None
    ):
        flags.append("no postback")
    if template.defect:
        flags.append(f"defect: {template.defect}")
    return "\t".join([template.key, kind, template.name, "; ".join(flags)])


def _templates_list(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.templates import load_user_catalog

    for template in load_user_catalog(settings.data_dir).templates:
        print(_template_line(template))
    return 0


def _templates_search(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.templates import load_user_catalog

    for template in load_user_catalog(settings.data_dir).search(args.text):
        print(_template_line(template))
    return 0


def _templates_show(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from clickloop.errors import NotFound
    from clickloop.services.templates import load_user_catalog

    catalog = load_user_catalog(settings.data_dir)
    found = [template for template in catalog.templates if template.key == args.key]
    if not found:
        near = ", ".join(template.key for template in catalog.search(args.key)[:5])
        raise NotFound("template", f"{args.key}{f' (did you mean: {near}?)' if near else ''}")
    for template in found:
        shown = asdict(template)
        del shown["provenance"]
        provenance = template.provenance
        source = {
            "source": provenance.describe(),
            "documentation_url": provenance.documentation_url,
            "checked_on": provenance.checked_on.isoformat() if provenance.checked_on else None,
            "domain": provenance.domain,
        }
        print(json.dumps(source | shown, ensure_ascii=False, indent=1))
    return 0


def _templates_validate(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.catalog.templates import TrafficSourceTemplate
    from clickloop.services.templates import check_templates_file

    checks = check_templates_file(args.file, now=_now())
    for check in checks:
        template = check.template
        kind = "traffic source" if isinstance(template, TrafficSourceTemplate) else "network"
        mark = "problem" if check.problems else "ok"
        replaces = "\treplaces the shipped template" if check.replaces_shipped else ""
        print(f"{mark}\t{template.key}\t{kind}\t{template.name}{replaces}")
        for what, text in check.rendered:
            print(f"  {what}: {text}")
        for problem in check.problems:
            print(f"  problem: {problem}")
    bad = sum(1 for check in checks if check.problems)
    if bad:
        print(
            f"error: {bad} of {len(checks)} templates in {args.file} would not work",
            file=sys.stderr,
        )
        return 1
    print(f"{len(checks)} templates in {args.file} are valid")
    return 0


def _field_values(pairs: Sequence[str]) -> dict[str, str]:
    from clickloop.errors import InvalidInput

    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidInput("--field", f"expected NAME=VALUE, got {pair!r}")
        values[name.strip()] = value
    return values


def _create_from_template(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import templates

    catalog = templates.load_user_catalog(settings.data_dir)
    create = (
        templates.create_traffic_source_from_template
        if args.kind == "traffic-sources"
        else templates.create_affiliate_network_from_template
    )
    new_id = create(
        _ready_engine(settings),
        catalog,
        template_key=args.template,
        field_values=_field_values(args.field),
        now=_now(),
        name=args.name,
    )
    print(f"created {args.kind} {new_id} from template {args.template}")
    _warn_defect(catalog, args)
    if args.kind == "affiliate-networks":
        _print_network_postback_url(settings, new_id)
    return 0


def _print_network_postback_url(settings: Settings, network_id: int) -> None:
    from clickloop.services.entities import get_settings, list_rows
    from clickloop.services.templates import network_postback_url

    engine = _ready_engine(settings)
    row = next(r for r in list_rows(engine, "affiliate_networks") if r["id"] == network_id)
    key = get_settings(engine)["postback_key"]
    url = network_postback_url(settings.base_url, key, row["postback_params"])
    print(f"postback URL for the network: {url}")


def _reapply_template(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import templates

    catalog = templates.load_user_catalog(settings.data_dir)
    reapply = (
        templates.reapply_traffic_source_template
        if args.kind == "traffic-sources"
        else templates.reapply_affiliate_network_template
    )
    changed = reapply(
        _ready_engine(settings),
        catalog,
        args.id,
        now=_now(),
        field_values=_field_values(args.field),
        template_key=args.template,
        dry_run=args.dry_run,
    )
    print(json.dumps({"changed": changed}, default=str, ensure_ascii=False))
    if args.template:
        _warn_defect(catalog, args)
    return 0


def _warn_defect(catalog: Any, args: argparse.Namespace) -> None:
    """A template flagged defective still makes its entity (the user may complete it), but the
    user is told on stderr what will not work until then."""
    find = catalog.traffic_source if args.kind == "traffic-sources" else catalog.affiliate_network
    defect = find(args.template).defect
    if defect:
        print(
            f"warning: template {args.template} cannot work as shipped: {defect}", file=sys.stderr
        )


def _add_postback_commands(command: Any, commands: Any) -> None:
    postbacks = commands.add_parser("postbacks", help="the received-postback log").add_subparsers(
        metavar="ACTION"
    )
    rerun = command("reprocess", _postbacks_reprocess, "re-run ignored postbacks", postbacks)
    rerun.add_argument("id", type=int, nargs="?", help="a received-postback id")
    rerun.add_argument("--all-ignored", action="store_true", help="every ignored one not re-run")
    rerun.add_argument("--reason", help="with --all-ignored: only those whose reason contains this")
    rerun.add_argument("--subid", help="with --all-ignored: only those of this click")
    records.register_postback_list(postbacks, command)
    rates = commands.add_parser("rates", help="exchange rates").add_subparsers(metavar="ACTION")
    refresh = command("update", _rates_update, "store the ECB daily reference rates", rates)
    refresh.add_argument("--offline", action="store_true", help="use the rates bundled offline")
    refresh.add_argument(
        "--url", help="where to download the ECB daily file from (default: the rates_url setting)"
    )
    manual = command("set", _rates_set, "set a rate by hand: units of CODE per 1 EUR", rates)
    manual.add_argument("code")
    manual.add_argument("per_eur")
    output.add_format_option(
        command("list", _rates_list, "list the rates in force and their source", rates)
    )
    types = commands.add_parser("conversion-types", help="conversion types").add_subparsers(
        metavar="ACTION"
    )
    add = command("add", _conversion_types_add, "create a custom conversion type", types)
    add.add_argument("name")
    add.add_argument("--label", default="")
    output.add_format_option(
        command("list", _conversion_types_list, "list built-in and custom types", types)
    )


def _add_export_commands(command: Any, commands: Any) -> None:
    exports = commands.add_parser("export", help="conversions for the ad platforms").add_subparsers(
        metavar="FORMAT"
    )
    google = command(
        "google-ads",
        _export_google_ads,
        "conversions by gclid as a Google Ads offline conversion import CSV (stdout)",
        exports,
    )
    google.add_argument("--conversion-name", required=True, help="the Google Ads conversion action")
    google.add_argument(
        "--from", dest="date_from", type=_day, help="first day (default: 6 days ago)"
    )
    google.add_argument("--to", dest="date_to", type=_day, help="last day (default: today)")
    google.add_argument("--statuses", default="sale", help="conversion types, comma-separated")
    google.add_argument("--campaign", type=int, help="only this campaign's conversions")


def _day(value: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date as YYYY-MM-DD, not {value!r}") from None


def _add_report_commands(command: Any, commands: Any) -> None:
    reports = commands.add_parser("reports", help="report aggregates").add_subparsers(
        metavar="ACTION"
    )
    rebuild = command(
        "rebuild",
        _reports_rebuild,
        "recompute the report aggregates from the raw clicks and conversions",
        reports,
    )
    rebuild.add_argument(
        "--from", dest="since", type=_day, help="from this day on, UTC (default: everything)"
    )
    rebuild.add_argument(
        "--daily",
        action="store_true",
        help="only the daily aggregates, in the timezone setting's zone (after an upgrade or a "
        "change of the timezone setting)",
    )


def _reports_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import Progress

    from clickloop.storage.report_cubes import rebuild

    engine = _ready_engine(settings)
    since = datetime.combine(args.since, datetime.min.time(), UTC) if args.since else None
    with Progress(transient=True) as progress:
        task = progress.add_task("rebuilding hours and days", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        clicks = rebuild(engine, since=since, progress=advance, hourly=not args.daily)
    from clickloop.services import retention

    retention.refresh_statistics(engine)  # the cubes just refilled
    if args.daily:
        print("rebuilt the daily report aggregates")
    else:
        print(f"rebuilt the report aggregates from {clicks} clicks")
    return 0


def _export_google_ads(args: argparse.Namespace, settings: Settings) -> int:
    from zoneinfo import ZoneInfo

    from clickloop.http.csvexport import csv_rows
    from clickloop.services.entities import get_settings
    from clickloop.services.exports import GOOGLE_ADS_COLUMNS, google_ads_export, google_ads_rows

    engine = _ready_engine(settings)
    timezone = get_settings(engine)["timezone"]
    export = google_ads_export(
        conversion_name=args.conversion_name,
        date_from=args.date_from,
        date_to=args.date_to,
        statuses=args.statuses,
        campaign_id=args.campaign,
        timezone=timezone,
        today=datetime.now(ZoneInfo(timezone)).date(),
    )
    for chunk in csv_rows(google_ads_rows(engine, export), GOOGLE_ADS_COLUMNS):
        sys.stdout.write(chunk)
    return 0


def _print_postback(prefix: dict[str, Any], result: Any) -> None:
    outcome = {"outcome": str(result.outcome), "reason": result.reason}
    ids = {"log_id": result.log_id, "conversion_id": result.conversion_id}
    print(json.dumps(prefix | outcome | ids, ensure_ascii=False))


def _postbacks_reprocess(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.postbacks import IgnoredFilter, reprocess, reprocess_ignored

    engine = _ready_engine(settings)
    if args.all_ignored == (args.id is not None):
        raise ConfigError("give either a received-postback id or --all-ignored")
    if (args.reason or args.subid) and not args.all_ignored:
        raise ConfigError("--reason and --subid narrow --all-ignored")
    if args.id is not None:
        _print_postback({"id": args.id}, reprocess(engine, args.id, now=_now()))
        return 0
    chosen = IgnoredFilter(reason=args.reason or None, subid=args.subid or None)
    outcomes = []
    for log_id, result in reprocess_ignored(engine, chosen, now=_now()):
        _print_postback({"id": log_id}, result)
        outcomes.append(str(result.outcome))
    output.print_summary("ignored postbacks re-run", outcomes)
    return 0


def _import_conversions(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.postbacks import import_conversions

    path = args.conversions_file
    if str(args.file) != "conversions" or path is None:
        raise ConfigError("usage: clickloop import FILE | clickloop import conversions FILE")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    source = f"import:{path.name}"
    engine = _ready_engine(settings)
    # The bar follows the lines read (blank, comment and header lines too).
    read = output.progress(lines, total=len(lines), description="importing")
    outcomes = []
    for number, result in import_conversions(engine, read, now=_now(), source=source):
        _print_postback({"line": number}, result)
        outcomes.append(str(result.outcome))
    output.print_summary("lines imported", outcomes)
    return 0


def _rates_update(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.rate_updates import update_now
    from clickloop.services.rates import update_rates

    engine = _ready_engine(settings)
    if args.offline:
        rows = update_rates(engine, now=_now(), offline=True)
    else:
        url, timeout = args.url or settings.rates_url, settings.rates_timeout_seconds
        rows = update_now(engine, now=_now(), url=url, timeout=timeout)
    as_of = rows[0].as_of if rows else "-"
    print(f"stored {len(rows)} ECB rates for {as_of} (rates set by hand were kept)")
    return 0


def _rates_set(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.rates import set_rate

    row = set_rate(_ready_engine(settings), args.code, args.per_eur, now=_now())
    print(f"1 EUR = {row.per_eur} {row.currency}")
    return 0


def _rates_list(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from clickloop.services.rates import list_rates

    rows = [asdict(row) for row in list_rates(_ready_engine(settings))]
    output.print_rows(args, rows, ("currency", "per_eur", "source", "as_of"), empty="no rates")
    return 0


def _conversion_types_add(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.postbacks import add_conversion_type

    name = add_conversion_type(_ready_engine(settings), args.name, label=args.label, now=_now())
    print(f"created conversion type {name}: train it with {name}_status=WORD,WORD")
    return 0


def _conversion_types_list(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.postbacks import list_conversion_types

    rows = list_conversion_types(_ready_engine(settings))
    output.print_rows(args, rows, ("name", "label", "built_in"), empty="no conversion types")
    return 0


def _display_url(url: str) -> str:
    """A database URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url


if __name__ == "__main__":
    sys.exit(main())
