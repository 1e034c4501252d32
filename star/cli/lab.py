"""The lab commands: ``star serve``, ``star db upgrade|current``,
``star device register|list|retire`` and ``star agent run --device NAME``.

Settings come from lab_config.yaml (or ``--config``) and ``STAR_*`` variables. Device commands
talk to the coordinator's REST API with the admin token; the agent talks to it with its device
token. Heavy imports (FastAPI, SQLAlchemy) happen inside the commands.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from star.cli.errors import fail

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="lab_config.yaml (default: $STAR_CONFIG)")
]

db_app = typer.Typer(help="The lab database (migrations).", no_args_is_help=True)
device_app = typer.Typer(help="Devices known to the coordinator.", no_args_is_help=True)
agent_app = typer.Typer(help="Device agents.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(db_app, name="db")
    app.add_typer(device_app, name="device")
    app.add_typer(agent_app, name="agent")


def _settings(config: Path | None, **overrides: Any):  # type: ignore[no-untyped-def]
    from star.config import load_settings

    try:
        return load_settings(config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        fail(f"configuration: {exc}")


# --- serve / db ------------------------------------------------------------------------------


def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="listen address (coordinator.host)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (coordinator.port)")] = None,
) -> None:
    """Run the coordinator (REST API; OpenAPI at /docs).

    Example: star serve --config lab_config.yaml
    """
    import uvicorn

    from star.db import SchemaOutOfDateError
    from star.lab import create_app

    settings = _settings(config)
    try:
        app = create_app(settings)
    except SchemaOutOfDateError as exc:
        fail(str(exc), code=1)
    uvicorn.run(
        app,
        host=host or settings.coordinator.host,
        port=port if port is not None else settings.coordinator.port,
        log_level="info",
    )


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOpt = None,
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Migrate the database to the newest schema (creates a SQLite file if needed).

    Example: star db upgrade --config lab_config.yaml
    """
    from star.db import Database, upgrade
    from star.db.migrate import current_revision

    settings = _settings(config)
    db = Database(settings.db_url)
    before = current_revision(db.engine)
    after = upgrade(db, revision)
    typer.echo(f"{db.engine.url.render_as_string(hide_password=True)}: {before} -> {after}")


@db_app.command("current")
def db_current(config: ConfigOpt = None) -> None:
    """Print the database's schema revision and the one this code needs.

    Example: star db current
    """
    from star.db import Database
    from star.db.migrate import current_revision, head_revision

    settings = _settings(config)
    db = Database(settings.db_url)
    current, head = current_revision(db.engine), head_revision()
    state = "up to date" if current == head else "out of date: run `star db upgrade`"
    typer.echo(f"current: {current}  head: {head}  ({state})")
    if current != head:
        raise typer.Exit(1)


# --- devices ---------------------------------------------------------------------------------


def _admin(config: Path | None):  # type: ignore[no-untyped-def]
    from device_agents.client import AdminClient

    settings = _settings(config)
    token = settings.resolve_admin_token()
    if token is None:
        fail(
            "no admin token: set STAR_ADMIN_TOKEN or admin_token in lab_config.yaml "
            f"(`star serve` writes one to {settings.admin_token_file()})"
        )
    return AdminClient(settings.url, token, timeout_s=settings.agent.request_timeout_s)


def _call(fn):  # type: ignore[no-untyped-def]
    from device_agents.client import CoordinatorUnavailable, Rejected

    try:
        return fn()
    except Rejected as exc:
        fail(f"the coordinator refused: {exc.detail}")
    except CoordinatorUnavailable as exc:
        fail(f"the coordinator is not reachable: {exc}", code=1)


@device_app.command("register")
def device_register(
    name: Annotated[str, typer.Argument(help="device name, e.g. s24-01")],
    kind: Annotated[str, typer.Option("--kind", help="android | x86")],
    serial: Annotated[str | None, typer.Option(help="adb serial (android)")] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tags", "--tag", help="tags (repeat or comma-separate)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Register a device; prints its token ONCE (give it to the agent as STAR_DEVICE_TOKEN).

    Example: star device register s24 --kind android --serial R5CX123 --tags s24
    """
    from pydantic import ValidationError

    from device_agents.protocol import DeviceCreate

    flat = sorted({t.strip() for item in tags or [] for t in item.split(",") if t.strip()})
    try:
        body = DeviceCreate(name=name, kind=kind, serial=serial, tags=flat)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
    with _admin(config) as client:
        registered = _call(lambda: client.register_device(body))
    typer.echo(f"registered device {registered.device.name} (id {registered.device.id})")
    typer.echo("device token (shown once; store it for the agent as STAR_DEVICE_TOKEN):")
    typer.echo(registered.token)


@device_app.command("list")
def device_list(
    config: ConfigOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="include retired devices")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List devices with their status and properties.

    Example: star device list --json
    """
    with _admin(config) as client:
        devices = _call(lambda: client.list_devices(include_retired=all_))
    if as_json:
        typer.echo(json.dumps(devices.model_dump(mode="json"), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "kind", "serial", "tags", "online", "status", "last seen", "model/SoC")
    for d in devices.data:
        model = " / ".join(x for x in (d.properties.get("model"), d.properties.get("soc")) if x)
        table.add_row(
            d.name,
            d.kind,
            d.serial or "",
            ",".join(d.tags),
            "yes" if d.online else "no",
            d.status + (f" ({d.status_reason})" if d.status_reason else ""),
            d.last_seen_at.strftime("%Y-%m-%d %H:%M:%S") if d.last_seen_at else "never",
            model,
        )
    Console().print(table)


@device_app.command("retire")
def device_retire(name: str, config: ConfigOpt = None) -> None:
    """Retire a device: its token stops working; its measurements stay.

    Example: star device retire old-laptop
    """
    with _admin(config) as client:
        device = _call(lambda: client.retire_device(name))
    typer.echo(f"retired device {device.name}")


# --- agent -----------------------------------------------------------------------------------


@agent_app.command("run")
def agent_run(
    device: Annotated[str, typer.Option("--device", help="the registered device name")],
    config: ConfigOpt = None,
    max_jobs: Annotated[int | None, typer.Option(help="exit after this many jobs")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve profile jobs for one device until interrupted (SIGINT/SIGTERM).

    Example: STAR_DEVICE_TOKEN=... star agent run --device s24
    """
    from device_agents.agent import Agent
    from device_agents.client import Backoff, CoordinatorClient, Stopped, retrying
    from device_agents.spool import Spool

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # an idle agent polls and heartbeats every few seconds: each request is not news (jobs,
    # results, retries and failures are logged by the agent itself); -v shows them
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    settings = _settings(config)
    if settings.device_token is None:
        fail("no device token: set STAR_DEVICE_TOKEN (from `star device register`)")
    a = settings.agent
    client = CoordinatorClient(
        settings.url,
        settings.device_token.get_secret_value(),
        timeout_s=a.request_timeout_s,
    )
    backoff = Backoff(a.backoff_base_s, a.backoff_cap_s, server_error_tries=a.server_error_tries,
                      server_error_s=a.server_error_s)
    stop_waiting = threading.Event()
    try:
        me = _call(lambda: retrying(client.me, backoff=backoff, stop=stop_waiting))
    except Stopped:
        raise typer.Exit(1) from None
    if me.name != device:
        fail(f"--device {device}: this token belongs to device {me.name}")
    runner = _runner(me.kind, me.serial, settings)
    spool = Spool(a.spool_dir or settings.data_dir / "spool" / device)
    work = a.work_dir or settings.data_dir / "work" / device
    agent = Agent(
        client,
        runner,
        spool,
        work,
        heartbeat_interval_s=a.heartbeat_interval_s,
        poll_interval_s=a.poll_interval_s,
        backoff=backoff,
    )

    def _stop(signum: int, _frame: object) -> None:
        # the running benchmark is stopped too, and its job given back to the queue
        logging.getLogger("star.agent").info("signal %d: stopping", signum)
        agent.shutdown()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from device_agents.agent import RuntimeMismatch

    try:
        done = agent.run(max_jobs=max_jobs)
    except RuntimeMismatch as exc:
        fail(str(exc), code=1)
    finally:
        client.close()
    typer.echo(f"agent for {device}: {done} job(s) completed")


def _runner(kind: str, serial: str | None, settings: Any):  # type: ignore[no-untyped-def]
    a = settings.agent
    if kind == "x86":
        from device_agents.quiet import QuietThresholds
        from device_agents.x86 import X86Runner

        quiet = QuietThresholds(
            max_load_1m=a.quiet_max_load_1m, max_steal_pct=a.quiet_max_steal_pct,
            max_other_cpu_pct=a.quiet_max_other_cpu_pct, timeout_s=a.quiet_timeout_s,
            sample_s=a.quiet_sample_s,
        ) if a.quiet_wait else None  # fmt: skip
        return X86Runner(llama_bench_path=a.llama_bench_path, threads=a.threads, quiet=quiet)
    if kind == "android":
        if not serial:
            fail("an android device needs its adb serial (star device register --serial)")
        from device_agents.android import DeviceProfile
        from device_agents.android_runner import AndroidRunner

        ad = settings.android
        profile = DeviceProfile(
            threads=ad.threads,
            cpu_mask=ad.cpu_mask,
            cool_down_below_c=ad.cool_down_below_c,
            cool_down_timeout_s=ad.cool_down_timeout_s,
            remote_root=ad.remote_dir,
        )
        files, flags, pinned, features = _phone_runtime(ad)
        return AndroidRunner.connect(
            serial, adb_host=a.adb_host, adb_port=a.adb_port, files=files, profile=profile,
            build_flags=flags, expected_commit=pinned, required_cpu_features=features,
        )  # fmt: skip
    fail(f"unknown device kind {kind!r}")


def _phone_runtime(ad: Any) -> tuple[list[Path], list[str], str, tuple[str, ...]]:
    """(files to push, their build flags, the pinned commit, the CPU features the build needs)
    for an Android agent.

    The cached cross build (``star runtime build --target ...``) unless ``android.llama_bench``
    names another binary; a build from another llama.cpp commit is refused here, naming both
    (an explicit binary is checked when it first reports its commit on the phone)."""
    from device_agents.android_runner import runtime_files
    from star.runtime.build import LLAMA_CPP_COMMIT
    from star.runtime.cross import TARGETS, read_phone_marker, required_cpu_features

    if ad.llama_bench is not None:
        files = runtime_files(ad.llama_bench, ad.libs)
        if not files[0].is_file():
            fail(f"android.llama_bench: {files[0]} does not exist (or leave it unset to use "
                 f"`star runtime build --target {ad.runtime_target}`)")
        arch = next((f.split("=", 1)[1] for f in ad.build_flags
                     if f.startswith("-DGGML_CPU_ARM_ARCH=")), "")  # fmt: skip
        return files, list(ad.build_flags), LLAMA_CPP_COMMIT, required_cpu_features(arch)
    if ad.runtime_target not in TARGETS:
        fail(f"android.runtime_target {ad.runtime_target!r}: one of {', '.join(TARGETS)}")
    phone = read_phone_marker(ad.runtime_target)
    if phone is None:
        fail(f"no phone build of llama.cpp for {ad.runtime_target}: run "
             f"`star runtime build --target {ad.runtime_target}` (or set android.llama_bench)")
    if phone.commit != LLAMA_CPP_COMMIT:
        fail(f"the phone build {phone.llama_bench} is llama.cpp commit {phone.commit}, but the "
             f"coordinator's pinned runtime is commit {LLAMA_CPP_COMMIT}: rebuild it with "
             f"`star runtime build --target {ad.runtime_target}`")
    return ([phone.llama_bench], list(phone.build_flags), LLAMA_CPP_COMMIT,
            required_cpu_features(phone.arch))
