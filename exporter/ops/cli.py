"""The exporter command: serve, worker, migrate, seed, token, and dev (what make run runs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from arq.worker import run_worker

from exporter.auth.account_repository import AccountRepository
from exporter.auth.tokens import issue_token
from exporter.db import DATABASE_ERRORS, create_pool
from exporter.metrics import clear_other_processes
from exporter.ops.app import create_app
from exporter.ops.devstack import DEV_STACK_ENV
from exporter.ops.logs import configure_logging
from exporter.ops.migrate import migrate
from exporter.ops.seed import seed
from exporter.ops.serving import serve
from exporter.ops.worker import worker_options
from settings import DatabaseSettings, LogSettings, S, Settings, SettingsError, load_settings

log = logging.getLogger("exporter.api")

MAX_TOKEN_HOURS = 10 * 365 * 24


def _settings(kind: type[S], *, env_file: Path | None = None) -> S:
    """The settings from the environment, or exit with a message naming the bad variable."""
    try:
        return load_settings(kind, env_file=env_file)
    except SettingsError as exc:
        sys.exit(str(exc))


def _serve(args: argparse.Namespace) -> None:
    settings = _settings(Settings)
    if settings.metrics_dir is not None:
        # Before the other processes start: what is there is a previous run's.
        clear_other_processes(settings.metrics_dir)
    elif settings.api_processes > 1:
        log.warning(
            "EXPORTER_API_PROCESSES=%d without PROMETHEUS_MULTIPROC_DIR: /metrics answers 503",
            settings.api_processes,
        )
    serve(
        partial(create_app, settings),
        settings.host,
        settings.port,
        settings.api_processes,
        log_format=settings.log_format,
    )


def _worker(args: argparse.Namespace) -> None:
    settings = _settings(Settings)
    try:
        options = worker_options(settings)
    except SettingsError as exc:
        sys.exit(str(exc))
    run_worker(options)


def _migrate(args: argparse.Namespace) -> None:
    settings = _settings(DatabaseSettings)
    applied = asyncio.run(migrate(settings.database_url))
    print(f"applied {len(applied)} migration(s)")


def _seed(args: argparse.Namespace) -> None:
    settings = _settings(DatabaseSettings)
    password = args.admin_password
    result = asyncio.run(
        seed(settings.database_url, accounts=args.accounts, admin_password=password)
    )
    print(f"{result.roles} roles, {result.accounts} accounts")
    if password:
        print(f"admin password (also of the demo accounts): {password}")


async def _account_id(settings: Settings, username: str) -> int | None:
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        account = await AccountRepository(pool).get_by_username(username)
        return None if account is None else account.id
    finally:
        await pool.close()


def _token(args: argparse.Namespace) -> None:
    settings = _settings(Settings, env_file=DEV_STACK_ENV if DEV_STACK_ENV.exists() else None)
    account_id = asyncio.run(_account_id(settings, args.username))
    if account_id is None:
        sys.exit(f"no account named {args.username!r}")
    ttl_s = round(args.ttl_hours * 3600)
    print(issue_token(settings.secret.get_secret_value(), account_id, ttl_s=ttl_s))


def _hours(text: str) -> float:
    """A positive number of hours, fractions allowed, at most ten years."""
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not 1 / 60 <= hours <= MAX_TOKEN_HOURS:
        raise argparse.ArgumentTypeError(
            f"must be from one minute (0.0167) to {MAX_TOKEN_HOURS} hours, not {text}"
        )
    return hours


def _dev(args: argparse.Namespace) -> None:
    from exporter.ops.devstack import run_dev_stack  # only `make run` needs the embedded servers

    run_dev_stack(embedded=args.embedded, accounts=args.accounts, s3=args.s3)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exporter", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP API").set_defaults(run=_serve)
    commands.add_parser("worker", help="run an export worker (arq)").set_defaults(run=_worker)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)
    seed_cmd = commands.add_parser("seed", help="make sure demo roles, accounts and admin exist")
    seed_cmd.add_argument("--accounts", type=int, default=10_000, help="accounts in all (10000)")
    seed_cmd.add_argument("--admin-password", help="set the admin's password to this")
    seed_cmd.set_defaults(run=_seed)
    token_cmd = commands.add_parser("token", help="print a bearer token for an account")
    token_cmd.add_argument("username")
    token_cmd.add_argument(
        "--ttl-hours", type=_hours, default=24.0, help="lifetime in hours, e.g. 0.5 (24)"
    )
    token_cmd.set_defaults(run=_token)
    dev_cmd = commands.add_parser("dev", help="migrate, seed, run API and worker (make run)")
    dev_cmd.add_argument("--embedded", action="store_true", help="always use embedded servers")
    dev_cmd.add_argument("--accounts", type=int, default=10_000, help="accounts in all (10000)")
    dev_cmd.add_argument(
        "--s3", action="store_true", help="keep files in a SeaweedFS started under var/dev"
    )
    dev_cmd.set_defaults(run=_dev)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    configure_logging(_settings(LogSettings).log_format)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except DATABASE_ERRORS as exc:
        # A database that is missing or down, a port that is taken: one line, not a traceback.
        sys.exit(f"exporter {args.command}: {type(exc).__name__}: {exc}")
