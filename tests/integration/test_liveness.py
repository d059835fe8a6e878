"""`arq --check run_worker.WorkerSettings` as a worker's liveness probe: exit 0 while the worker
of that name runs, non-zero once it has died and its health key lapsed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as redis

from exporter.ops.worker import health_check_key
from settings import Settings
from tests.failing_handlers import HANDLER_MODULES
from tests.integration.test_logs import start_arq
from tests.processes import ROOT, settings_env
from tests.support import wait_until


def arq_check(settings: Settings, worker_name: str) -> int:
    """The exit code of the probe, run as a process manager would, with the worker's settings."""
    env = {
        **os.environ,
        **settings_env(settings, worker_name=worker_name),
        "EXPORTER_HANDLER_MODULES": HANDLER_MODULES,
    }
    arq = Path(sys.executable).parent / "arq"
    done = subprocess.run(
        [str(arq), "--check", "run_worker.WorkerSettings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    return done.returncode


async def test_arq_check_passes_while_the_named_worker_runs_and_fails_once_it_was_killed(
    settings: Settings, tmp_path: Path
) -> None:
    named = settings.model_copy(update={"worker_name": "probe-a"})
    key = health_check_key(named)
    assert key == f"{settings.queue_name}:health-check:probe-a"
    worker = start_arq(settings, tmp_path / "worker.log", worker_name="probe-a")
    client = redis.Redis.from_url(settings.redis_url)
    try:

        async def passing() -> bool:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            return arq_check(settings, "probe-a") == 0

        await wait_until(passing, timeout_s=60, what="the probe to pass")
        # Another name's probe does not take this worker's key for its own.
        assert arq_check(settings, "probe-b") == 1

        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

        # Killed, the worker deletes nothing: the key lapses after its interval (+1 s).
        async def lapsed() -> bool:
            return await client.exists(key) == 0

        await wait_until(lapsed, timeout_s=settings.sweep_interval_s + 5, what="the key to lapse")
        assert arq_check(settings, "probe-a") == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        await client.aclose()
