"""The storage a deployment's settings choose: the one place an API or a worker opens it."""

from __future__ import annotations

import uuid

from exporter.storage.base import Storage
from exporter.storage.local import LocalStorage
from settings import Settings


def open_storage(settings: Settings, deployment: uuid.UUID) -> Storage:
    """Where the finished files of ``deployment`` live (a local directory is the one backend)."""
    return LocalStorage(settings.storage_dir, deployment)
