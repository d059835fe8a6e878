"""Entry point for ``arq run_worker.WorkerSettings``."""

from __future__ import annotations

import sys
from typing import Any

from exporter.ops.logs import configure_logging
from exporter.ops.worker import worker_options
from settings import Settings, SettingsError, load_settings

try:
    _settings = load_settings(Settings)
except SettingsError as exc:
    sys.exit(str(exc))

configure_logging()
WorkerSettings: type[Any] = type("WorkerSettings", (), worker_options(_settings))
