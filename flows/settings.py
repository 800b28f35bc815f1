"""The one settings object of ytmp3.

Every knob is an environment variable with the ``YTMP3_`` prefix (a ``.env`` file in the
working directory works too). Nothing else in the project reads the environment: code
asks :func:`get_settings` and passes the result down.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationError, WithJsonSchema, field_validator
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
    concurrency: int = Field(default=2, gt=0, le=32, description="Items converted at once.")
    retries: int = Field(default=3, ge=0, le=10, description="Retries of a transient failure.")
    retry_delay_seconds: float = Field(
        default=2.0, ge=0, description="First retry delay; doubles on each retry, with jitter."
    )
    socket_timeout_seconds: float = Field(default=20.0, gt=0)
    ffmpeg_timeout_seconds: float = Field(default=1800.0, gt=0)
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
    temp_grace_hours: float = Field(
        default=1.0, gt=0, description="Age after which cleanup removes abandoned temp files."
    )

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
    def tmp_dir(self) -> Path:
        """Private scratch space inside the data dir, so publishing is a rename."""
        return self.data_dir / ".tmp"

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

    # -- flow containers on the Docker work pool (infrastructure/docker/create_pool.py) --
    container_memory_mb: int = Field(
        default=1024, ge=256, description="Memory limit of one flow container (no swap on top)."
    )
    container_pids_limit: int = Field(
        default=512, ge=64, description="Most processes and threads in one flow container."
    )


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            value = error.get("input")
            problems.append(f"{ENV_PREFIX}{field.upper()}={value!r}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
