"""Runtime settings, read once from the environment at the edge of the program."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal, TypeVar, get_args
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from exporter.tasks.notify_url import check_notify_url

DEFAULT_STORAGE_DIR = Path("var/exports")
# Where attempts write their files when storage is not a local directory.
DEFAULT_WORK_DIR = Path("var/work")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class SettingsError(Exception):
    """A setting has a bad value; the message names its environment variable."""


def postgres_url(value: str) -> str:
    """``value`` if it is a PostgreSQL URL; ValueError otherwise."""
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must start with postgresql://")
    return value


@dataclass(frozen=True)
class S3Location:
    """Where an ``s3://bucket/prefix`` storage URL points (``prefix`` without slashes at its
    ends, maybe empty)."""

    bucket: str
    prefix: str


class LogSettings(BaseSettings):
    """How every command logs: read before anything else, so that its first line is right."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    log_format: Literal["text", "json"] = Field("text", alias="EXPORTER_LOG_FORMAT")


class DatabaseSettings(LogSettings):
    """What the commands that only touch the database need (migrate, seed): no secret."""

    database_url: str = Field("postgresql://postgres@127.0.0.1:5432/exporter", alias="DATABASE_URL")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        return postgres_url(value)


class Settings(DatabaseSettings):
    """Every knob of the service; each field is read from the environment variable in its alias."""

    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")
    secret: SecretStr = Field(alias="EXPORTER_SECRET", min_length=32)
    storage_url: str = Field(
        default_factory=lambda: DEFAULT_STORAGE_DIR.resolve().as_uri(),
        alias="EXPORTER_STORAGE_URL",
        description="file:///absolute/dir or s3://bucket/prefix: where finished files are kept",
    )
    s3_endpoint_url: str | None = Field(
        None, alias="EXPORTER_S3_ENDPOINT_URL", description="an S3-compatible store's address"
    )
    aws_access_key_id: str | None = Field(None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, alias="AWS_SECRET_ACCESS_KEY")
    aws_region: str = Field("us-east-1", alias="AWS_REGION", min_length=1)
    # Downloads answered with a 303 to a presigned URL of the store, when storage is s3.
    download_redirect: bool = Field(False, alias="EXPORTER_DOWNLOAD_REDIRECT")
    work_dir: Path | None = Field(
        None, alias="EXPORTER_WORK_DIR", description="where exports are written before publishing"
    )
    host: str = Field("127.0.0.1", alias="EXPORTER_HOST")
    port: int = Field(8080, alias="EXPORTER_PORT", ge=1, le=65535)
    time_zone: str = Field("Asia/Shanghai", alias="EXPORTER_TIME_ZONE")
    job_timeout_s: int = Field(3600, alias="EXPORTER_JOB_TIMEOUT_S", gt=0)
    api_processes: int = Field(1, alias="EXPORTER_API_PROCESSES", ge=1, le=256)
    worker_concurrency: int = Field(4, alias="EXPORTER_WORKER_CONCURRENCY", ge=1, le=256)
    # The first part of a worker's id (``<name>:<pid>:<random>``), which tasks, their history
    # and the logs show. Machines cloned from one image, or containers, may share a host name
    # or have one nobody recognises; the pid and the random part keep ids unique regardless.
    worker_name: str | None = Field(
        None,
        alias="EXPORTER_WORKER_NAME",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="names this machine in worker ids (default: the host name)",
    )
    queue_name: str = Field("exporter:queue", alias="EXPORTER_QUEUE_NAME", min_length=1)
    max_body_bytes: int = Field(64 * 1024, alias="EXPORTER_MAX_BODY_BYTES", ge=1024)
    # An upload is streamed to disk, never held whole: EXPORTER_MAX_BODY_BYTES is not its cap.
    max_upload_bytes: int = Field(64 * 1024**2, alias="EXPORTER_MAX_UPLOAD_BYTES", ge=1024)
    header_timeout_s: float = Field(15.0, alias="EXPORTER_HEADER_TIMEOUT_S", gt=0, le=3600)
    body_timeout_s: float = Field(10.0, alias="EXPORTER_BODY_TIMEOUT_S", gt=0, le=3600)
    lease_s: float = Field(15.0, alias="EXPORTER_LEASE_S", ge=1.0, le=3600)
    sweep_interval_s: float = Field(5.0, alias="EXPORTER_SWEEP_INTERVAL_S", ge=0.1, le=3600)
    janitor_interval_s: float = Field(60.0, alias="EXPORTER_JANITOR_INTERVAL_S", ge=0.1, le=86400)
    max_attempts: int = Field(3, alias="EXPORTER_MAX_ATTEMPTS", ge=1, le=100)
    retention_days: float = Field(7.0, alias="EXPORTER_RETENTION_DAYS", ge=0)
    # Audit events are kept apart from files; the database refuses to remove any under a day old.
    audit_retention_days: float = Field(365.0, alias="EXPORTER_AUDIT_RETENTION_DAYS", ge=1)
    shutdown_grace_s: int = Field(30, alias="EXPORTER_SHUTDOWN_GRACE_S", ge=0, le=3600)
    max_active_per_user: int = Field(3, alias="EXPORTER_MAX_ACTIVE_PER_USER", ge=1)
    sign_ins_per_username: int = Field(50, alias="EXPORTER_SIGN_INS_PER_USERNAME", ge=1)
    sign_ins_per_address: int = Field(30, alias="EXPORTER_SIGN_INS_PER_ADDRESS", ge=1)
    # About eighteen full exports of a million accounts (56 MB each as xlsx).
    max_kept_bytes_per_user: int = Field(1024**3, alias="EXPORTER_MAX_KEPT_BYTES_PER_USER", ge=1)
    max_pending: int = Field(1000, alias="EXPORTER_MAX_PENDING", ge=1)
    max_streams_per_user: int = Field(5, alias="EXPORTER_MAX_STREAMS_PER_USER", ge=1)
    # Each credential with streams open costs an account check every 5 s: 1,000 of them made
    # another user's list p90 146-203 ms instead of 60 ms here; 500 cost nothing measurable.
    max_streams: int = Field(500, alias="EXPORTER_MAX_STREAMS", ge=1)
    max_rows: int = Field(5_000_000, alias="EXPORTER_MAX_ROWS", ge=1)
    # Rows of one import, all sheets together: a sheet of ten million rows is refused.
    max_import_rows: int = Field(2_000_000, alias="EXPORTER_MAX_IMPORT_ROWS", ge=1)
    encode_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, alias="EXPORTER_ENCODE_PROCESSES", ge=0, le=256
    )
    # Processes that read one large xlsx upload together (1: the worker reads it alone).
    import_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, alias="EXPORTER_IMPORT_PROCESSES", ge=1, le=64
    )
    parallel_min_rows: int = Field(100_000, alias="EXPORTER_PARALLEL_MIN_ROWS", ge=1)
    # Where the rows of a split xlsx export are made: rendered by the database (fast; its CPU
    # pays) or written by xlsxwriter in the encoding processes (the workers' CPU pays).
    xlsx_rows_in_database: bool = Field(True, alias="EXPORTER_XLSX_ROWS_IN_DATABASE")
    replica_database_url: str | None = Field(
        None,
        alias="EXPORTER_REPLICA_DATABASE_URL",
        description="a streaming replica that exports read their rows from",
    )
    # How long an export waits for the replica to replay its task's creation before reading
    # from the primary instead.
    replica_max_wait_s: float = Field(5.0, alias="EXPORTER_REPLICA_MAX_WAIT_S", ge=0, le=600)
    loop_lag_log: Path | None = Field(
        None, alias="EXPORTER_LOOP_LAG_LOG", description="file for the worker's loop-lag probe"
    )
    handler_modules: str = Field(
        "", alias="EXPORTER_HANDLER_MODULES", description="extra modules that register handlers"
    )
    # A scrape of /metrics must then carry it as a bearer token (the API's and the worker's).
    metrics_token: SecretStr | None = Field(None, alias="EXPORTER_METRICS_TOKEN", min_length=16)
    # Where the API processes keep their metrics, added up at each scrape (prometheus-client
    # reads the variable itself); needed when EXPORTER_API_PROCESSES > 1.
    metrics_dir: Path | None = Field(None, alias="PROMETHEUS_MULTIPROC_DIR")
    worker_metrics_port: int | None = Field(
        None, alias="EXPORTER_WORKER_METRICS_PORT", ge=1, le=65535
    )
    worker_metrics_host: str = Field("127.0.0.1", alias="EXPORTER_WORKER_METRICS_HOST")
    # Webhooks (README "Webhooks"): every task's end is told to webhook_url too, signed with
    # webhook_secret; a failed attempt is tried again after webhook_backoff_s, then 4 times as
    # long each time (at most 6 h), up to webhook_max_attempts attempts in all.
    webhook_secret: SecretStr | None = Field(None, alias="EXPORTER_WEBHOOK_SECRET", min_length=16)
    webhook_url: str | None = Field(None, alias="EXPORTER_WEBHOOK_URL")
    webhook_max_attempts: int = Field(7, alias="EXPORTER_WEBHOOK_MAX_ATTEMPTS", ge=1, le=50)
    webhook_backoff_s: float = Field(30.0, alias="EXPORTER_WEBHOOK_BACKOFF_S", gt=0, le=3600)
    webhook_timeout_s: float = Field(10.0, alias="EXPORTER_WEBHOOK_TIMEOUT_S", gt=0, le=120)
    webhook_allow_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        alias="EXPORTER_WEBHOOK_ALLOW_HOSTS",
        description="host names or addresses webhooks may reach although private or loopback",
    )
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (),
        alias="EXPORTER_TRUSTED_PROXIES",
        description="addresses or networks of reverse proxies whose X-Forwarded-* are believed",
    )

    @property
    def storage_dir(self) -> Path | None:
        """The directory of a ``file://`` storage URL; None when storage is elsewhere (s3)."""
        parts = urlsplit(self.storage_url)
        return Path(unquote(parts.path)) if parts.scheme == "file" else None

    @property
    def s3_location(self) -> S3Location | None:
        """The bucket and key prefix of an ``s3://`` storage URL; None for a local directory."""
        parts = urlsplit(self.storage_url)
        if parts.scheme != "s3":
            return None
        return S3Location(parts.netloc, parts.path.strip("/"))

    @property
    def scratch_dir(self) -> Path:
        """The work directories' root: ``EXPORTER_WORK_DIR``, else ``.work`` in the storage
        directory, else (s3) ``var/work``."""
        if self.work_dir is not None:
            return self.work_dir
        # On the storage directory's disk by default, so that publishing a file is a rename.
        return DEFAULT_WORK_DIR if self.storage_dir is None else self.storage_dir / ".work"

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError("a file URL names an absolute directory: file:///var/exports")
        elif parts.scheme == "s3":
            if not BUCKET_NAME.fullmatch(parts.netloc):
                raise ValueError(
                    "the bucket must be 3-63 lowercase letters, digits, dots or hyphens:"
                    " s3://bucket/prefix"
                )
            # Keys are taken literally by the store: "a//b", "a/./b" or "a%2Fb" would name
            # other objects than the prefix seems to.
            prefix = parts.path.strip("/")
            segments = prefix.split("/") if prefix else []
            if any(segment in ("", ".", "..") for segment in segments) or "%" in prefix:
                raise ValueError(
                    "the prefix takes no empty, . or .. segments nor percent-encoding:"
                    " s3://bucket/team/exports"
                )
        else:
            raise ValueError("must be file:///absolute/dir or s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ValueError("takes no query (?) nor fragment (#)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        # 10.0.0.1/8 is refused (host bits set): whether one address or all of 10/8 was meant
        # would be a guess.
        return tuple(ip_network(part.strip()) for part in value.split(",") if part.strip())

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return tuple(part.strip().lower() for part in value.split(",") if part.strip())

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:  # set but empty: no deployment webhook
            return None
        # The secret is declared first: checked (or refused) already.
        if "webhook_secret" in info.data and info.data["webhook_secret"] is None:
            raise ValueError("needs EXPORTER_WEBHOOK_SECRET to sign what it is sent")
        return check_notify_url(value)

    @field_validator("replica_database_url")
    @classmethod
    def _replica_url(cls, value: str | None) -> str | None:
        # Set but empty (EXPORTER_REPLICA_DATABASE_URL= in an env file) means no replica.
        return postgres_url(value) if value else None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


# Variables whose value is a secret: a settings error names them but never shows their value.
SECRET_VARIABLES = frozenset(
    str(field.alias)
    for field in Settings.model_fields.values()
    if SecretStr in (field.annotation, *get_args(field.annotation))
)


def _shown(name: str, value: object) -> str:
    """The value as a settings error may show it: never a secret, nor a URL's password."""
    if name in SECRET_VARIABLES:
        return "(hidden)"
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
            password = parts.password
        except ValueError:
            return repr(value)
        if password:
            return repr(value.replace(f":{password}@", ":***@", 1))
    return repr(value)


def _problem(error: ErrorDetails) -> str:
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    if error["type"] == "missing":
        return f"{name} is required but not set"
    if error["type"] == "too_short":
        # pydantic's message ends with the length of what was given: a hint at a secret.
        message = f"must be at least {error.get('ctx', {}).get('min_length')} characters"
    else:
        message = error["msg"].removeprefix("Value error, ")
    return f"{name}={_shown(name, error.get('input'))}: {message}"


S = TypeVar("S", bound=LogSettings)


def load_settings(kind: type[S], *, env_file: Path | None = None) -> S:
    """Read the settings from the environment, or raise SettingsError naming each bad variable.

    ``env_file`` supplies what the environment leaves unset (the environment wins).
    """
    try:
        return kind(_env_file=env_file)
    except ValidationError as exc:
        # pydantic's own message repeats every input (the secret too): only ours leaves here.
        problems = [_problem(error) for error in exc.errors()]
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
