"""Settings: one object, filled from ``FHIR_*`` environment variables and CLI flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SQLITE_FILE = "fhir.sqlite3"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


class StartupError(Exception):
    """A start-up problem the operator fixes (a setting, the database, the port): ``str()`` is
    one line saying what is wrong and what to do; the CLI prints it and exits 1."""


class ConfigError(StartupError, ValueError):
    """A ``FHIR_*`` variable whose value cannot be read."""


_KINDS = {"int": (int, "a whole number"), "float": (float, "a number")}


@dataclass(frozen=True)
class Settings:
    """Server settings. Every field maps to ``FHIR_<FIELD NAME IN UPPER CASE>``."""

    database_url: str = ""
    #: run Alembic migrations when the server starts
    migrate_on_start: bool = True
    #: ``none`` (open access) or ``token`` (OAuth2 client credentials / SMART backend services, docs/security.md)
    auth: str = "none"
    #: allow ``auth=none`` on an address other than loopback (otherwise the server refuses to start)
    auth_allow_open: bool = False
    #: HS256 access-token key (>= 32 characters); empty: a key generated once and kept in the database
    auth_secret: str = ""
    #: access-token lifetime in seconds
    auth_token_lifetime: int = 300
    #: public base URL used in fullUrl/Location/links; empty = derived from the request
    base_url: str = ""
    #: largest accepted request body, in bytes (413 above it)
    max_body_bytes: int = 16 * 1024 * 1024
    #: deepest JSON nesting and most JSON values accepted in a request body
    max_json_depth: int = 100
    max_json_elements: int = 250_000
    #: most query parameters and longest query string accepted (400 / 414 above them)
    max_query_params: int = 100
    max_query_bytes: int = 16_384
    #: comma-separated origins allowed by CORS (browser SMART apps); empty = no CORS headers
    cors_origins: str = ""
    #: responses of at least this many bytes are gzip-compressed for clients that accept gzip
    #: (api/compression.py); 0: never compressed
    gzip_min_bytes: int = 4096
    #: default and maximum page size of history (and search) Bundles
    default_count: int = 50
    max_count: int = 1000
    #: also validate with the fhir.resources R4B model (a second opinion after the R4 checker)
    r4b_model_check: bool = True
    #: server workers validate and index part of a large transaction Bundle in a helper process
    #: when the machine has a core to spare (service/prepare_helper.py; one more process per worker)
    prepare_helper: bool = True
    #: most entries accepted in one transaction or batch Bundle (413 above it)
    max_bundle_entries: int = 1000
    #: conditional delete may delete several matches (otherwise more than one match is 412)
    conditional_delete_multiple: bool = False
    #: SATUSEHAT address administrativeCode checks: warn (unknown region codes warn), strict, off
    region_codes: str = "warn"
    #: master patient index: record likely duplicates (probable or certain) of every Patient written,
    #: imports included, for review in Patient/$duplicates (docs/mpi.md); costs a candidate lookup per write
    mpi_flag_duplicates: bool = False
    #: record an AuditEvent for every FHIR request (docs/audit.md); seconds between buffered flushes
    audit: bool = True
    audit_flush_interval: float = 0.2
    #: days of change-log rows ``fhir-server changes purge`` keeps (docs/changelog.md)
    change_log_retention_days: int = 90
    #: FastAPI's native OpenTelemetry instrumentation (off: its per-request provider check costs ~6 us)
    opentelemetry: bool = False
    #: Bulk Data $export: folder of the NDJSON files (relative to the working directory),
    #: seconds between job polls of each worker, lease a worker holds on a running job (renewed while it runs)
    export_dir: str = "fhir-export"
    export_poll_interval: float = 1.0
    export_lease_seconds: float = 60.0
    #: run an export worker in this server process (off: another process runs the jobs)
    export_worker: bool = True
    #: Subscriptions (docs/subscriptions.md): CIDRs rest-hook endpoints may lie in besides public
    #: addresses (clinic LANs; http: only there); run the delivery worker in this process; failures
    #: in a row before a subscription goes to error; seconds between the worker's polls; the lease
    #: a worker holds on a subscription; first and longest back-off between attempts (seconds)
    subscription_allowed_networks: str = ""
    subscription_worker: bool = True
    subscription_max_failures: int = 10
    subscription_poll_interval: float = 1.0
    subscription_lease_seconds: float = 30.0
    subscription_retry_base: float = 1.0
    subscription_retry_max: float = 3600.0
    #: the web console at /console (docs/console.md); the landing page and /docs stay either way
    console: bool = True
    #: the IANA time zone the console shows times in (chart axes, the encounter timeline, the
    #: sync and audit pages): the facility's, WIB by default (WITA: Asia/Makassar, WIT: Asia/Jayapura)
    console_timezone: str = "Asia/Jakarta"
    #: SATUSEHAT sync (docs/satusehat.md): ``sandbox``, ``production`` or an explicit base URL, and the
    #: facility's credentials and Organization id; off while any is unset. The secret is never shown.
    #: Then: run a sync worker for this server; in a child process of its own (false: on this
    #: process's event loop); that process's nice increment; seconds between polls; the lease on a
    #: partition; first and longest back-off (s); how long a NIK SATUSEHAT did not know stays
    #: "not found"; the timeout of one call; partitions served (= requests in flight) at once per worker
    satusehat_url: str = ""
    satusehat_client_id: str = ""
    satusehat_client_secret: str = field(default="", repr=False)
    satusehat_organization_id: str = ""
    satusehat_worker: bool = True
    satusehat_worker_process: bool = True
    satusehat_nice: int = 10
    satusehat_poll_interval: float = 0.5
    satusehat_lease_seconds: float = 60.0
    satusehat_retry_base: float = 1.0
    satusehat_retry_max: float = 300.0
    satusehat_negative_cache_seconds: float = 86400.0
    satusehat_timeout: float = 30.0
    satusehat_concurrency: int = 8
    #: SQLAlchemy pool size per worker process (PostgreSQL)
    pool_size: int = 10
    #: PostgreSQL statement timeout in seconds (0 = none): a longer query is cancelled, the client gets 400
    statement_timeout: float = 30.0
    #: seconds a SQLite writer waits for the lock held by another process
    sqlite_busy_timeout: float = 30.0
    #: at start-up (``serve``, ``migrate``, ``import``), create a missing PostgreSQL database or SQLite folder
    create_database: bool = False

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``FHIR_*`` variables; explicit ``overrides`` (CLI flags) win when not None."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"FHIR_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.type == "bool":
                values[f.name] = _bool(raw)
            elif f.type in _KINDS:
                convert, kind = _KINDS[str(f.type)]
                try:
                    values[f.name] = convert(raw)
                except ValueError:
                    raise ConfigError(f"FHIR_{f.name.upper()}={raw!r} is not {kind}: fix or unset it") from None
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
