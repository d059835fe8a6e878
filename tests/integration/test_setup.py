"""Migrations, settings and the handler registry."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from exporter.errors import DuplicateHandler
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.registry import ExportParams, export_handler, load_handlers, registry
from exporter.exports.row_query import RowQuery
from exporter.ops.migrate import bundled_migrations
from settings import Settings, SettingsError, load_settings
from tests.conftest import ROOT, SECRET
from tests.processes import exporter_command, settings_env


async def test_two_processes_migrating_at_once_both_succeed(empty_database_url: str) -> None:
    env = {"DATABASE_URL": empty_database_url, "EXPORTER_SECRET": SECRET}
    processes = [exporter_command("migrate", env=env) for _ in range(2)]

    outputs = await asyncio.gather(*(asyncio.to_thread(p.communicate, None, 60) for p in processes))

    assert [p.returncode for p in processes] == [0, 0], outputs
    lines = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert lines == ["applied 0 migration(s)", f"applied {len(bundled_migrations())} migration(s)"]
    conn = await asyncpg.connect(empty_database_url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
    finally:
        await conn.close()
    assert [r["version"] for r in versions] == [m.version for m in bundled_migrations()]
    assert {"accounts", "roles", "tasks", "task_events"} <= {r["tablename"] for r in tables}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXPORTER_PORT", "eighty"),
        ("EXPORTER_TIME_ZONE", "Mars/Olympus"),
        ("EXPORTER_JOB_TIMEOUT_S", "0"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("EXPORTER_SECRET", "short"),
        ("EXPORTER_REPLICA_DATABASE_URL", "mysql://replica/x"),
        ("EXPORTER_REPLICA_MAX_WAIT_S", "-1"),
        ("EXPORTER_WORKER_NAME", "rack 1:a"),  # a colon would break the worker id's parts
        ("EXPORTER_STORAGE_URL", "var/exports"),
        ("EXPORTER_STORAGE_URL", "file://relative/dir"),
        ("EXPORTER_STORAGE_URL", "s3://Not_A_Bucket/prefix"),
        ("EXPORTER_STORAGE_URL", "gs://bucket/prefix"),
        ("EXPORTER_STORAGE_URL", "s3://bucket/a//b"),
        ("EXPORTER_STORAGE_URL", "s3://bucket/a/./b"),
        ("EXPORTER_STORAGE_URL", "s3://bucket/../b"),
        ("EXPORTER_STORAGE_URL", "s3://bucket/a/.."),
        ("EXPORTER_STORAGE_URL", "s3://bucket/a%2Fb"),
        ("EXPORTER_STORAGE_URL", "s3://bucket/a%2fb"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("EXPORTER_SECRET", SECRET)
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError, match=variable):
        load_settings(Settings)


def test_an_empty_replica_url_means_no_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_SECRET", SECRET)
    monkeypatch.setenv("EXPORTER_REPLICA_DATABASE_URL", "")

    assert load_settings(Settings).replica_database_url is None


def test_a_missing_secret_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPORTER_SECRET", raising=False)

    with pytest.raises(SettingsError, match="EXPORTER_SECRET is required"):
        load_settings(Settings)


LEAKY_SECRET = "short-and-secret"
LEAKY_PASSWORD = "db-password-1"


@pytest.mark.parametrize(
    "command",
    [
        ["exporter", "serve"],
        ["exporter", "worker"],
        ["exporter", "migrate"],
        ["exporter", "seed"],
        ["exporter", "token", "admin"],
        ["exporter", "dev"],  # what make run runs
        ["arq", "run_worker.WorkerSettings"],
    ],
    ids=lambda command: " ".join(command),
)
def test_a_settings_error_never_shows_a_secret(tmp_path: Path, command: list[str]) -> None:
    env = {
        **os.environ,
        "EXPORTER_SECRET": LEAKY_SECRET,
        "DATABASE_URL": f"mysql://exporter:{LEAKY_PASSWORD}@127.0.0.1/exporter",
    }
    executable = str(Path(sys.executable).parent / command[0])
    # In a scratch directory: `exporter dev` keeps its state under the working directory.
    done = subprocess.run(
        [executable, *command[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    # migrate and seed read only DATABASE_URL, so only it is named.
    assert ("EXPORTER_SECRET" in output) is (command[1:2] not in (["migrate"], ["seed"])), output
    assert "DATABASE_URL" in output
    assert LEAKY_SECRET not in output
    assert LEAKY_PASSWORD not in output
    assert "Traceback" not in output


def test_the_worker_command_exits_with_the_settings_message(tmp_path: Path) -> None:
    process = exporter_command("worker", env={"EXPORTER_SECRET": SECRET, "EXPORTER_PORT": "x"})
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "EXPORTER_PORT" in output
    assert "Traceback" not in output


def test_registering_a_taken_type_name_raises() -> None:
    load_handlers()

    class Nothing(ExportParams):
        pass

    with pytest.raises(DuplicateHandler, match="'account'"):

        @export_handler("account", title="again", params=Nothing, columns=[Column("ID", "1")])
        def rows(params: Nothing) -> RowQuery:
            return RowQuery("accounts", order_by="id")

    assert registry.get("account").title == "账号列表"


def test_an_enum_label_that_looks_like_a_formula_is_refused_at_registration() -> None:
    class Nothing(ExportParams):
        pass

    with pytest.raises(ValueError, match="looks like a formula"):

        @export_handler(
            "test_formula_label",
            title="t",
            params=Nothing,
            columns=[Column("状态", "status", ColumnKind.ENUM, labels={"x": "=1+1"})],
        )
        def rows(params: Nothing) -> RowQuery:
            return RowQuery("accounts", order_by="id")

    assert "test_formula_label" not in registry


def test_arq_command_line_prints_each_worker_line_once(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, **settings_env(settings)}
    log_path = tmp_path / "arq.log"
    with log_path.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "arq", "run_worker.WorkerSettings"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "ready: queue=" not in log_path.read_text():
            assert worker.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)

    printed = log_path.read_text()
    assert printed.count("Starting worker for") == 1, printed
    assert printed.count("shutdown on SIGINT") == 2, printed  # arq's two shutdown lines, once each
