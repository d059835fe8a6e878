"""What request handlers reach through the application: settings, repositories, queue, storage."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from exporter.audit.trail import AuditTrail
from exporter.auth.account_repository import AccountRepository
from exporter.db import Pool
from exporter.exports.kind import ExportKind
from exporter.imports.kind import ImportKind
from exporter.storage.base import Storage
from exporter.storage.scratch import ScratchSpace
from exporter.tasks.queue import TaskQueue
from exporter.tasks.repository import TaskRepository
from settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: Pool
    tasks: TaskRepository
    accounts: AccountRepository
    queue: TaskQueue
    storage: Storage
    exports: ExportKind
    imports: ImportKind
    # Uploads are received in its upload_dir before they are stored.
    scratch: ScratchSpace
    audit: AuditTrail


SERVICES = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]
