"""Lab configuration: ``lab_config.yaml`` overlaid by ``STAR_*`` environment variables.

One small pydantic-settings model, grouped by concern (``coordinator``, ``agent``); new concerns
(the search settings) are added as another nested section. Precedence, highest first: keyword
arguments to ``load_settings``, environment (``STAR_DATABASE_URL``, ``STAR_COORDINATOR_URL``,
``STAR_DEVICE_TOKEN``, nested as ``STAR_COORDINATOR__LEASE_SECONDS``), the YAML file, the defaults.

The YAML file is ``$STAR_CONFIG`` if set, else ``./lab_config.yaml`` when it exists. A key no
setting has is refused with the closest known one (a typo must not be silently ignored); the
``search:`` and ``proxy:`` sections belong to the search and ``star proxy train``.
"""

from __future__ import annotations

import logging
import os
import secrets
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("lab_config.yaml")
_config_file: ContextVar[Path | None] = ContextVar("star_config_file", default=None)
_read_files: ContextVar[bool] = ContextVar("star_read_config_files", default=True)


def _unknown_keys(model: type[BaseModel], data: Any, where: str,
                  also: tuple[str, ...] = ()) -> None:
    """A key no setting has is a typo, not a setting: refuse it, naming the closest one."""
    import difflib

    if not isinstance(data, dict):
        return
    known = set(model.model_fields) | set(also)
    for key in data:
        if isinstance(key, str) and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {sorted(known)})"
            raise ValueError(f"{where}{key}: unknown setting{hint}")


class CoordinatorSettings(BaseModel):
    """The coordinator (``star serve``): the ``coordinator:`` section of lab_config.yaml."""


    url: str = "http://127.0.0.1:8765"  # what agents and the CLI talk to
    host: str = "127.0.0.1"  # what `star serve` binds
    port: int = Field(default=8765, ge=0, le=65535)
    artifact_dir: Path | None = None  # default: <data_dir>/artifacts
    # An agent that stops heartbeating loses its job after this long; heartbeats come every
    # agent.heartbeat_interval_s, so keep this a few heartbeats long.
    lease_seconds: float = Field(default=60.0, gt=0)
    # Expired or failed leases before a job fails for good (with the last reason).
    max_attempts: int = Field(default=3, ge=1)
    # The reaper also runs on every lease call; this is the period of the background sweep.
    reaper_interval_s: float = Field(default=5.0, gt=0)
    # A device not heard from for this long is shown offline.
    device_offline_after_s: float = Field(default=120.0, gt=0)
    # Measurements taken hotter than this (max zone, before or after) are flagged hot.
    hot_celsius: float = 45.0
    # Measurements whose stddev / median exceeds this are flagged noisy.
    noisy_cv: float = Field(default=0.10, ge=0)
    # An agent measures a hot or noisy context again, at most this many times in all, and
    # reports how many it took (sent to agents with every job: one rule on both sides).
    max_tries: int = Field(default=3, ge=1, le=20)
    max_artifact_bytes: int = Field(default=8 * 1024**3, gt=0)
    # Any other request body larger than this is refused (413) before it is parsed. The largest
    # real message, a result, is a few kB per context measured.
    max_body_bytes: int = Field(default=16 * 1024**2, gt=0)
    # Threads that run request handlers (and hold database sessions) per server process.
    threads: int = Field(default=8, ge=1, le=256)
    # Seconds a device token stays authenticated without a database look-up (0: every call).
    auth_cache_s: float = Field(default=2.0, ge=0)
    # Search engines in this process (star.lab.engines): POST /runs starts one, and runs that
    # a coordinator drove are adopted when their engine is gone. Off: runs are only recorded,
    # and `star search resume` drives them from wherever it runs.
    engines: bool = True
    # An engine silent this long is taken for dead (it heartbeats every engine_heartbeat_s).
    engine_stale_s: float = Field(default=120.0, gt=0)
    engine_heartbeat_s: float = Field(default=10.0, gt=0)
    adopt_interval_s: float = Field(default=10.0, gt=0)  # how often orphaned runs are looked for
    # At shutdown, how long engines get to reach a phase boundary (else they die mid-phase and
    # are adopted, and continued where they were, by the next coordinator).
    engine_shutdown_s: float = Field(default=15.0, ge=0)


class AgentSettings(BaseModel):
    """A device agent (``star agent run``)."""


    spool_dir: Path | None = None  # default: <data_dir>/spool/<device>
    work_dir: Path | None = None  # default: <data_dir>/work/<device>; artifacts land here
    poll_interval_s: float = Field(default=5.0, gt=0)  # idle wait when no job is queued
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    # A coordinator that answers 500 to a request has failed on that request: it is sent again
    # (with the backoff above) at most this many times, or for this long, then given up (a
    # spooled result is set aside in spool/rejected/). An unreachable coordinator (connection
    # refused, 502/503/504 from a proxy, 429) is waited for without a bound: it is restarting.
    server_error_tries: int = Field(default=8, ge=1, le=1000)
    server_error_s: float = Field(default=600.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    llama_bench_path: Path | None = None  # default: star.runtime.ensure_runtime().llama_bench
    threads: int | None = Field(default=None, gt=0)  # default: the runner decides
    n_gen: int = Field(default=32, gt=0)  # tokens generated for the decode figure
    adb_host: str = "127.0.0.1"
    adb_port: int = 5037
    # x86 hosts: wait for a quiet machine before every measurement. Defaults suit a 2-core
    # laptop: a busy neighbour (a build, a browser, proxy training on the same host) spreads
    # decode figures 10-100x. After quiet_timeout_s the agent measures anyway and records that
    # the machine was not quiet; each measurement's ``conditions`` say what it saw.
    quiet_wait: bool = True
    quiet_max_load_1m: float | None = Field(default=1.0, ge=0)  # 1-minute load; None: ignore
    quiet_max_steal_pct: float | None = Field(default=5.0, ge=0, le=100)  # hypervisor steal
    # other processes' CPU, in % of one core (100 = one core busy), over one sample window
    quiet_max_other_cpu_pct: float | None = Field(default=25.0, ge=0)
    quiet_timeout_s: float = Field(default=120.0, ge=0)
    quiet_sample_s: float = Field(default=1.0, gt=0, le=60)  # one sample's window


class AndroidSettings(BaseModel):
    """Phones: the ``android:`` section of lab_config.yaml.

    By default the agent pushes the static aarch64 llama-bench of ``star runtime build --target
    <runtime_target>`` (same pinned llama.cpp as the coordinator, build flags recorded with every
    measurement). ``llama_bench`` (+ ``libs``, ``build_flags``) names another binary instead, e.g.
    an NDK build; it must still report the pinned commit.
    """


    runtime_target: str = "android-arm64"  # or android-arm64-compat (armv8-a, older phones)
    llama_bench: Path | None = None  # an explicit phone binary instead of the cached build
    libs: Path | None = None  # its shared libraries, if it has any
    build_flags: list[str] = Field(default_factory=list)  # how the explicit binary was built
    remote_dir: str = "/data/local/tmp/star"
    cool_down_below_c: float = 45.0  # wait until every thermal zone is below this before a run
    cool_down_timeout_s: float = Field(default=600.0, ge=0)
    threads: int | None = Field(default=None, gt=0)  # default: the big cores detected
    cpu_mask: str | None = None  # llama-bench -C mask; default: the big cores detected


# Sections of lab_config.yaml that other readers own (the search, `star proxy train`).
OTHER_SECTIONS = ("search", "proxy")


class LabSettings(BaseSettings):
    """Everything a lab process reads from lab_config.yaml / ``STAR_*``."""

    model_config = SettingsConfigDict(
        env_prefix="STAR_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        # `search:` and `proxy:` are read by the search and `star proxy train`, not here
        _unknown_keys(cls, data, "", also=OTHER_SECTIONS)
        if isinstance(data, dict):
            for name, section in (("coordinator", CoordinatorSettings),
                                  ("agent", AgentSettings), ("android", AndroidSettings)):
                _unknown_keys(section, data.get(name), f"{name}.")
        return data

    data_dir: Path = Path(".star")
    database_url: str | None = None  # default: sqlite:///<data_dir>/star.db
    artifact_store: Path | None = None  # default: coordinator.artifact_dir, <data_dir>/artifacts
    coordinator_url: str | None = None  # STAR_COORDINATOR_URL; default: coordinator.url
    admin_token: SecretStr | None = None  # operators: star device register/list/retire
    device_token: SecretStr | None = None  # agents: the per-device token from registration
    coordinator: CoordinatorSettings = Field(default_factory=CoordinatorSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    android: AndroidSettings = Field(default_factory=AndroidSettings)

    @model_validator(mode="after")
    def _defaults(self) -> LabSettings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'star.db'}"
        if self.artifact_store is None:
            self.artifact_store = self.coordinator.artifact_dir or self.data_dir / "artifacts"
        if self.coordinator_url is None:
            self.coordinator_url = self.coordinator.url
        return self

    @property
    def url(self) -> str:
        """The coordinator's URL, as agents and the CLI reach it."""
        assert self.coordinator_url is not None  # set by the validator
        return self.coordinator_url

    @property
    def db_url(self) -> str:
        assert self.database_url is not None  # set by the validator
        return self.database_url

    @property
    def store_dir(self) -> Path:
        assert self.artifact_store is not None  # set by the validator
        return self.artifact_store

    def admin_token_file(self) -> Path:
        return self.data_dir / "admin_token"

    def resolve_admin_token(self, *, create: bool = False) -> str | None:
        """The configured admin token, else the one kept in <data_dir>/admin_token; with
        ``create`` (``star serve``), a missing one is generated there (mode 0600)."""
        if self.admin_token is not None:
            return self.admin_token.get_secret_value()
        path = self.admin_token_file()
        if path.is_file():
            return path.read_text().strip() or None
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        path.touch(mode=0o600)
        path.write_text(token + "\n")
        logging.getLogger(__name__).warning("no admin token configured: generated %s", path)
        return token

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file() if _read_files.get() else None
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


class ConfigError(ValueError):
    """Settings that cannot be used: one line per problem, ``file: field: reason``."""

    def __init__(self, source: Path | None, exc: ValidationError) -> None:
        where = f"{source}: " if source is not None else ""
        self.problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            self.problems.append(f"{where}{loc + ': ' if loc else ''}{msg}")
        super().__init__("; ".join(self.problems))


def config_file() -> Path | None:
    """The YAML file in force: the one passed to ``load_settings``, ``$STAR_CONFIG``, or
    ``./lab_config.yaml`` if it exists."""
    explicit = _config_file.get()
    if explicit is not None:
        return explicit
    env = os.environ.get("STAR_CONFIG")
    if env:
        return Path(env).expanduser()
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(
    config: Path | None = None, *, read_files: bool = True, **overrides: Any
) -> LabSettings:
    """Read the settings; ``config`` names the YAML file (it must exist when given).
    ``read_files=False`` ignores every YAML file (environment and overrides only)."""
    if config is not None and not Path(config).is_file():
        raise FileNotFoundError(f"config file {config} does not exist")
    token = _config_file.set(Path(config) if config is not None else None)
    files = _read_files.set(read_files)
    try:
        return LabSettings(**overrides)
    except ValidationError as exc:
        source = config_file() if read_files else None
        raise ConfigError(source, exc) from None
    finally:
        _read_files.reset(files)
        _config_file.reset(token)
