"""The one settings object of ytmp3.

Every knob is an environment variable with the ``YTMP3_`` prefix (a ``.env`` file in the
working directory works too). Nothing else in the project reads the environment: code
asks :func:`get_settings` and passes the result down.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Quality = Literal["128", "192", "256", "320", "V0", "V2"]
"""MP3 quality: constant bitrate in kbit/s, or LAME's VBR presets V0 (~245k) and V2 (~190k)."""

QUALITIES: tuple[Quality, ...] = ("128", "192", "256", "320", "V0", "V2")


def canonical_quality(value: object) -> object:
    """``192``, ``192.0`` and ``" 192 "`` as ``"192"``, ``"v0"`` as ``"V0"``.

    Anything else is returned unchanged, for :data:`Quality` to refuse with the choices.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        return text.upper() if text.upper() in QUALITIES else text
    return value


QualityParam = Annotated[
    Quality | None,
    BeforeValidator(canonical_quality),
    WithJsonSchema(
        {
            "title": "Quality",
            "description": "128, 192, 256 or 320 (kbit/s), V0 or V2 (VBR); empty: the default",
            # Numbers too: `prefect deployment run --param quality=192` sends a number.
            "enum": [*QUALITIES, *(int(q) for q in QUALITIES if q.isdigit()), None],
        }
    ),
]
"""A flow's ``quality`` parameter: a quality as text or number, or None for the default.

Runs are refused up front by the server's schema check when the value is none of these.
"""

ENV_PREFIX = "YTMP3_"

DEFAULT_ALLOWED_HOSTS = (
    "youtube.com",
    "www.youtube.com",
    "m.youtube.com",
    "music.youtube.com",
    "youtu.be",
    "youtube-nocookie.com",
    "www.youtube-nocookie.com",
)
"""Hosts a submitted URL may name."""

DEFAULT_MEDIA_HOSTS = (".googlevideo.com", ".ytimg.com", ".ggpht.com", ".googleusercontent.com")
"""Extra hosts yt-dlp may contact *during* a run (media CDNs, thumbnails).

A leading dot means "this domain and its subdomains". These are never accepted as the
URL a person submits; they only widen the per-request policy applied inside yt-dlp.
"""


USER_NAME_RE = re.compile(r"^(?:\*|[A-Za-z0-9][A-Za-z0-9._@+-]{0,63})$")
"""A page user's name (``*``: a shared password); it becomes the Prefect tag ``user:<name>``."""
PASSWORD_HASH_RE = re.compile(
    r"^scrypt\.(\d{1,2})\.(\d{1,2})\.(\d{1,2})\.([\w-]{16,64})\.([\w-]{32,128})$"
)
"""What ``python -m ui.passwords`` prints after ``NAME:`` (see ui/passwords.py)."""


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class SettingsError(ValueError):
    """A YTMP3_* variable has a value that cannot be used; the message names it."""


class Settings(BaseSettings):
    """Configuration for flows, the page and the tools around them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        default=Path("data"), description="Where the MP3 library lives (one filesystem)."
    )
    retention_hours: float = Field(default=8.0, gt=0, description="Lifetime of a published MP3.")
    default_quality: Annotated[Quality, BeforeValidator(canonical_quality)] = Field(
        default="192", description="Quality when none is asked."
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_ALLOWED_HOSTS,
        description="Comma-separated hosts a submitted URL may name; '*' allows any host.",
    )
    media_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_MEDIA_HOSTS,
        description="Comma-separated extra hosts yt-dlp may fetch from during a run.",
    )
    allow_private_networks: bool = Field(
        default=False, description="Allow loopback/private addresses (tests, trusted LANs)."
    )
    max_duration_seconds: int = Field(default=3 * 3600, gt=0)
    max_filesize_mb: int = Field(default=1024, gt=0)
    max_playlist_items: int = Field(default=100, gt=0)
    max_library_mb: int = Field(
        default=0, ge=0, description="Cap on the library; cleanup evicts oldest first (0: none)."
    )
    concurrency: int = Field(
        default_factory=lambda: min(cpu_count(), 8),
        gt=0,
        le=32,
        description="Items converted at once (default: this machine's CPUs, at most 8).",
    )
    retries: int = Field(default=3, ge=0, le=10, description="Retries of a transient failure.")
    retry_delay_seconds: float = Field(
        default=2.0, ge=0, description="First retry delay; doubles on each retry, with jitter."
    )
    socket_timeout_seconds: float = Field(default=20.0, gt=0)
    ffmpeg_timeout_seconds: float = Field(default=1800.0, gt=0)
    stall_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="A download with no new bytes this long stops."
    )
    min_download_kb_per_second: float = Field(
        default=16.0,
        ge=0,
        le=1_000_000,
        description="Slowest average a download may keep after its first stall-timeout "
        "seconds (kB/s, 1 kB = 1,000 bytes; 0: no minimum).",
    )
    lock_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="How long a run waits for another run of the same key."
    )
    state_dir: Path = Field(
        default=Path(".run"), description="`make run`'s Prefect database and logs."
    )
    local_host: str = Field(
        default="127.0.0.1", description="Address `make run` binds the server and page to."
    )
    prefect_port: int = Field(default=4200, gt=0, lt=65536, description="`make run`'s server.")
    ui_port: int = Field(default=8501, gt=0, lt=65536, description="`make run`'s web page.")

    @field_validator("allowed_hosts", "media_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(host.strip().lower() for host in value.split(",") if host.strip())
        return value

    @field_validator("data_dir", "state_dir")
    @classmethod
    def _absolute_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def retention_seconds(self) -> float:
        return self.retention_hours * 3600

    @property
    def max_library_bytes(self) -> int:
        """``max_library_mb`` in bytes (1 MB = 1,000,000 bytes, as the page counts)."""
        return self.max_library_mb * 1_000_000

    # -- network: how yt-dlp reaches the internet, and the one private service it may use --
    proxy: str | None = Field(
        default=None,
        description="Proxy URL for yt-dlp: http, https, socks4, socks4a, socks5 or socks5h.",
    )
    private_service: str | None = Field(
        default=None,
        description="host:port on a private network that yt-dlp may reach (a PO-token provider).",
    )

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None
        try:
            parts = urlsplit(value)
            valid = bool(parts.hostname) and parts.port != 0
        except ValueError:  # a bad port or IPv6 address
            valid = False
        schemes = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
        if (
            not valid
            or parts.scheme.lower() not in schemes
            or parts.path.strip("/")
            or "?" in value
        ):
            raise ValueError(
                f"must be a proxy URL like http://proxy.example:3128 ({', '.join(schemes)})"
            )
        return value

    @field_validator("private_service")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        value = (value or "").strip().lower()
        if not value:
            return None
        try:
            parts = urlsplit("//" + value)
            host = parts.hostname or ""
            valid = parts.netloc == value and bool(parts.port) and "@" not in value
            if valid and ":" not in host:  # a name, or a dotted-quad IPv4 address
                label = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
                valid = bool(re.fullmatch(rf"{label}(\.{label})*", host))
                if valid and host.rsplit(".", 1)[-1].isdigit():
                    ipaddress.IPv4Address(host)
        except ValueError:  # a bad port, IPv4 or IPv6 address
            valid = False
        if not valid:
            raise ValueError("must be host:port, like 127.0.0.1:4416 or pot-provider:4416")
        return value

    # -- the real YouTube: cookies, extractor arguments, pacing, yt-dlp's cache and age --
    cookies_file: Path | None = Field(
        default=None,
        description="A Netscape cookies.txt for yt-dlp; read only, each item uses a private copy.",
    )
    ytdlp_extractor_args: Annotated[dict[str, dict[str, list[str]]], NoDecode] = Field(
        default_factory=dict,
        description='yt-dlp\'s extractor_args, JSON: {"youtube": {"player_client": ["web"]}}.',
    )
    sleep_requests_seconds: float = Field(
        default=0.0, ge=0, le=60, description="Pause between yt-dlp's requests during extraction."
    )
    cache_dir: Path | None = Field(
        default=None,
        description="yt-dlp's cache (YouTube player JS); default: <state dir>/cache/yt-dlp.",
    )
    rate_limit_cooldown_seconds: float = Field(
        default=300.0,
        ge=1,
        description="After an HTTP 429, every run waits this long per yt-dlp step, then speeds up.",
    )
    ytdlp_max_age_days: int = Field(
        default=7,
        ge=0,
        description="ytdlp-check warns when the installed yt-dlp is this far behind.",
    )
    package_index_url: str = Field(
        default="https://pypi.org/pypi",
        description="The package index's JSON API that ytdlp-check asks for yt-dlp's releases.",
    )

    @field_validator("cookies_file", "cache_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cookies_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().absolute()
        if not value.is_file():
            raise ValueError(f"{value} is not a file (a Netscape cookies.txt is expected)")
        return value

    @field_validator("cache_dir")
    @classmethod
    def _absolute_cache(cls, value: Path | None) -> Path | None:
        return value.expanduser().absolute() if value is not None else None

    @field_validator("ytdlp_extractor_args", mode="before")
    @classmethod
    def _extractor_args(cls, value: object) -> object:
        """yt-dlp wants every argument as a list of strings; a single string is one item."""
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object like {"youtube": {"player_client": ["web"]}}')
        return {
            str(extractor).lower(): (
                {key: [item] if isinstance(item, str) else item for key, item in args.items()}
                if isinstance(args, dict)
                else args
            )
            for extractor, args in value.items()
        }

    @field_validator("package_index_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
            raise ValueError("must be an http(s) URL like https://pypi.org/pypi")
        return value

    @model_validator(mode="after")
    def _cache_outside_the_library(self) -> Settings:
        cache = self.ytdlp_cache_dir
        if cache == self.data_dir or self.data_dir in cache.parents:
            raise ValueError(
                f"YTMP3_CACHE_DIR ({cache}) must not be inside YTMP3_DATA_DIR ({self.data_dir}):"
                " names there are the library's"
            )
        return self

    @property
    def ytdlp_cache_dir(self) -> Path:
        """Where yt-dlp caches YouTube's player JS (outside the library)."""
        return self.cache_dir or self.state_dir / "cache" / "yt-dlp"

    # -- recovery: heartbeats, zombie runs, automatic re-runs (flows/automations.py) --
    heartbeat_seconds: int = Field(
        default=30,
        ge=30,
        description="Seconds between a flow run's heartbeats (Prefect's minimum is 30).",
    )
    zombie_after_seconds: float = Field(
        default=90.0,
        description="A run with no heartbeat for this long is marked Crashed (a zombie).",
    )

    @field_validator("zombie_after_seconds")
    @classmethod
    def _after_a_missed_heartbeat(cls, value: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat_seconds")
        if heartbeat is not None and value <= heartbeat:
            raise ValueError(
                f"must be more than {ENV_PREFIX}HEARTBEAT_SECONDS ({heartbeat}), "
                "or every running flow run looks dead"
            )
        return value

    # -- notifications (flows/notifications.py: Prefect automations send them) --
    notify_url: SecretStr | None = Field(
        default=None,
        description="Where notifications go: an http(s) webhook, or any Apprise URL (ntfy://...).",
    )

    @field_validator("notify_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @field_validator("notify_url")
    @classmethod
    def _notification_url(cls, value: SecretStr | None) -> SecretStr | None:
        """An http(s) URL with a host, or a URL Apprise can send to; never echoed."""
        if value is None:
            return None
        url = value.get_secret_value().strip()
        scheme = url.partition("://")[0].lower()
        if scheme in ("http", "https"):
            valid = bool(urlsplit(url).hostname)
        else:
            import logging

            import apprise

            log = logging.getLogger("apprise")  # it logs a URL it cannot read, token and all
            was, log.disabled = log.disabled, True
            try:
                valid = "://" in url and apprise.Apprise.instantiate(url) is not None
            finally:
                log.disabled = was
        if not valid:
            raise ValueError(
                "must be an http(s) webhook URL or an Apprise URL such as ntfy://host/topic, "
                "slack://..., mailto://... (see Apprise's list of services)"
            )
        return SecretStr(url)

    # -- flow containers on the Docker work pool (infrastructure/docker/create_pool.py) --
    container_memory_mb: int = Field(
        default=1024, ge=256, description="Memory limit of one flow container (no swap on top)."
    )
    container_pids_limit: int = Field(
        default=512, ge=64, description="Most processes and threads in one flow container."
    )

    # -- the page's users (ui/auth.py, ui/quota.py): sign-in, roles, fair shares --
    users: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated NAME:HASH entries from `python -m ui.passwords NAME`; "
        "NAME '*' is a shared password (people then give any name).",
    )
    operators: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated user names (or OIDC e-mails) who see every run."
    )
    oidc_users: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="E-mails or @domains the identity provider may sign in (empty: anyone it "
        "accepts).",
    )
    session_secret: str | None = Field(
        default=None,
        min_length=32,
        description="Key that signs the page's session cookies; unset: a new one per start.",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 90, description="How long a password sign-in lasts."
    )
    user_max_waiting: int = Field(
        default=20, ge=0, description="Items one user may have waiting or converting (0: any)."
    )
    user_submissions_per_minute: int = Field(
        default=10, ge=0, description="Submissions one user may make a minute (0: any)."
    )
    max_zip_mb: int = Field(
        default=1000, gt=0, description="Largest playlist ZIP the page builds (1 MB = 10^6 B)."
    )

    @field_validator("users", "operators", "oidc_users", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("users")
    @classmethod
    def _user_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = [entry.partition(":")[0] for entry in value]
        for entry, name in zip(value, names, strict=True):
            hashed = entry.partition(":")[2]
            if not USER_NAME_RE.match(name) or not PASSWORD_HASH_RE.match(hashed):
                raise ValueError(
                    f"entry {name[:64]!r} is not NAME:HASH; make one with "
                    "`python -m ui.passwords NAME`"
                )
        if len(set(names)) != len(names):
            raise ValueError("a name appears twice")
        return value

    # -- fair limits and the disk (flows/encoders.py, flows/space.py, prefect.yaml) --
    max_flow_runs: int = Field(
        default=8,
        ge=1,
        description="Flow runs at once: make run's runner and the Docker pool's limit.",
    )
    runner_poll_seconds: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description="How often make run's runner asks the server for submitted runs "
        "(Prefect's own PREFECT_RUNNER_POLL_FREQUENCY takes whole seconds only).",
    )
    max_encoders: int = Field(
        default_factory=cpu_count,
        ge=1,
        description="ffmpeg encoders at once across every run (default: this machine's cores).",
    )
    min_free_mb: int = Field(
        default=500,
        ge=0,
        description="Free space kept on the data dir's disk; a download that would cut into it "
        "is refused.",
    )

    @field_validator("max_encoders", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return cpu_count() if isinstance(value, str) and not value.strip() else value

    @property
    def min_free_bytes(self) -> int:
        """``min_free_mb`` in bytes (1 MB = 1,000,000 bytes)."""
        return self.min_free_mb * 1_000_000


NOT_SETTINGS = frozenset(
    {"YTMP3_IMAGE", "YTMP3_UI_IMAGE", "YTMP3_LIBRARY_VOLUME", "YTMP3_FLOWS_NETWORK",
     "YTMP3_TEST_BASE_IMAGE"}
)  # fmt: skip
"""``YTMP3_*`` names that compose, the build scripts and the tests read: not settings."""

SECRET_SETTINGS = frozenset(
    {"proxy", "ytdlp_extractor_args", "notify_url", "users", "session_secret"}
)
"""Settings whose values may hold credentials (a proxy password, a PO token, a webhook's
token, password hashes, the session key): messages never repeat them. The cookies file's
*path* is no secret; its content is never read here."""


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and ``.env``, or raise one clear SettingsError.

    A value that does not validate names its variable; so does a ``YTMP3_*`` variable
    that is no setting at all (a typo would otherwise be silently ignored), with the
    closest valid name.
    """
    problems = unknown_variables([*os.environ, *dotenv_values(".env")])
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            if not error["loc"]:  # a rule between settings: its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            value = "(hidden)" if field in SECRET_SETTINGS else repr(error.get("input"))
            problems.append(f"{ENV_PREFIX}{field.upper()}={value}: {error['msg']}")
    if problems:
        raise SettingsError("invalid configuration: " + "; ".join(problems))
    return settings


def unknown_variables(names: Iterable[str]) -> list[str]:
    """One message per ``YTMP3_*`` name in ``names`` that is no setting."""
    valid = [ENV_PREFIX + field.upper() for field in Settings.model_fields]
    problems = []
    for name in sorted(set(names)):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in valid and upper not in NOT_SETTINGS:
            closest = difflib.get_close_matches(upper, valid, n=1, cutoff=0.6)
            hint = f" (did you mean {closest[0]}?)" if closest else ""
            problems.append(f"{name} is not a ytmp3 setting{hint}")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
