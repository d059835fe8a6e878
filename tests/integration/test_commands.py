"""The `exporter` commands as a new user meets them: what they need, and how they fail."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import jwt

from tests.conftest import SECRET, Servers
from tests.processes import exporter_command


def _run(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    extra = {} if cwd is None else {"cwd": cwd}
    process = exporter_command(
        *args, env=env, unset=("EXPORTER_SECRET", "DATABASE_URL", "REDIS_URL"), **extra
    )
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


def test_migrate_and_seed_need_no_secret(empty_database_url: str) -> None:
    env = {"DATABASE_URL": empty_database_url}

    migrated = _run("migrate", env=env)
    seeded = _run("seed", "--accounts", "5", env=env)

    assert migrated[0] == 0, migrated[1]
    assert "applied" in migrated[1]
    assert seeded[0] == 0, seeded[1]
    assert "accounts" in seeded[1]


def _stack_env(tmp_path: Path, database_url: str) -> Path:
    """What `make run` leaves in var/dev for the commands run after it."""
    state = tmp_path / "var" / "dev"
    state.mkdir(parents=True)
    (state / "stack.env").write_text(
        f"DATABASE_URL={database_url}\nREDIS_URL=redis://127.0.0.1:6379/0\n"
        f"EXPORTER_SECRET={SECRET}\n"
    )
    return tmp_path


def test_token_finds_the_dev_stacks_secret_and_database(
    empty_database_url: str, tmp_path: Path
) -> None:
    assert _run("migrate", env={"DATABASE_URL": empty_database_url})[0] == 0
    assert _run("seed", "--accounts", "1", env={"DATABASE_URL": empty_database_url})[0] == 0
    project = _stack_env(tmp_path, empty_database_url)

    code, output = _run("token", "admin", "--ttl-hours", "0.5", env={}, cwd=project)

    assert code == 0, output
    claims = jwt.decode(output.strip().splitlines()[-1], SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 1800
    assert claims["exp"] > time.time()


def test_token_refuses_a_lifetime_that_is_over_before_it_starts(tmp_path: Path) -> None:
    for hours in ("0", "-1", "soon"):
        code, output = _run("token", "admin", "--ttl-hours", hours, env={}, cwd=tmp_path)

        assert code == 2, output
        assert "--ttl-hours" in output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_make_run_with_redis_away_fails_in_one_line_before_saying_it_is_up(
    service_urls: Servers, empty_database_url: str, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": empty_database_url,
        "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0",
        "EXPORTER_PORT": str(_free_port()),
    }

    code, output = _run("dev", "--accounts", "1", env=env, cwd=tmp_path)

    assert code == 1, output
    assert "stack is up" not in output
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("dev stack: Redis at 127.0.0.1:") and "does not answer" in last
