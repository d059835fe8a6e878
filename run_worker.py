"""Entry point for ``arq run_worker.WorkerSettings``: arq reads the class's attributes as the
arguments of its ``Worker``; every value comes from :func:`exporter.ops.worker.worker_options`."""

from __future__ import annotations

import sys

from exporter.ops.logs import configure_logging
from exporter.ops.worker import worker_options
from settings import Settings, SettingsError, load_settings

try:
    _settings = load_settings(Settings)
    _options = worker_options(_settings)
except SettingsError as exc:
    sys.exit(str(exc))

configure_logging(_settings.log_format)


class WorkerSettings:
    """The worker of this deployment, as ``arq`` starts it."""

    functions = _options["functions"]
    on_startup = _options["on_startup"]
    on_shutdown = _options["on_shutdown"]
    redis_settings = _options["redis_settings"]
    queue_name = _options["queue_name"]
    max_jobs = _options["max_jobs"]
    job_timeout = _options["job_timeout"]
    job_completion_wait = _options["job_completion_wait"]
    poll_delay = _options["poll_delay"]
    keep_result = _options["keep_result"]
    health_check_key = _options["health_check_key"]
    health_check_interval = _options["health_check_interval"]
    ctx = _options["ctx"]
