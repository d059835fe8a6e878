"""Where export files live: a temporary name while written, the final name once complete."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

from exporter.models import ExportFormat

TEMP_SUFFIX = ".part"


class FileStorage:
    """Files of finished exports, one per task, in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def temp_path(self, task_id: uuid.UUID, file_format: ExportFormat) -> Path:
        """A fresh name no reader looks at; a random part keeps two attempts apart."""
        return self.root / f".{task_id}.{secrets.token_hex(4)}.{file_format.value}{TEMP_SUFFIX}"

    def final_path(self, task_id: uuid.UUID, file_format: ExportFormat) -> Path:
        return self.root / f"{task_id}.{file_format.value}"

    @staticmethod
    def publish(temp: Path, final: Path) -> int:
        """Move a complete file into place atomically; returns its size in bytes."""
        size = temp.stat().st_size
        os.replace(temp, final)
        return size

    @staticmethod
    def discard(path: Path) -> None:
        path.unlink(missing_ok=True)

    def resolve(self, stored_path: str) -> Path | None:
        """The file of a finished task, if it still exists inside this storage."""
        path = Path(stored_path).resolve()
        if path.parent != self.root or not path.is_file():
            return None
        return path
