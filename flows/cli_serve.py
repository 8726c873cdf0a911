"""`modelmill serve`: the HTTP service of the champion (FastAPI + uvicorn), following the alias."""

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from modelmill.config import Settings

# the same options as flows.cli's (which imports this module at its end: no import back at the top)
ProjectOpt = typer.Option(".", "--project-dir", "-C", help="project folder (params.yaml, data/, mlflow/)")
ConfigOpt = typer.Option("params.yaml", "--config", "-c", help="configuration file, relative to the project")
SPEC_ENV = "MODELMILL_SERVE_SPEC"  # what each uvicorn worker builds its app from (JSON)
TOKEN_ENV = "MODELMILL_SERVE_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def fail(message: str) -> None:
    from flows.cli import fail as cli_fail

    cli_fail(message)


def model_ref(model: str | None, default_name: str, variant: str) -> tuple[str, str]:
    """`NAME@alias` or `NAME` (@champion) -> (registered model name, alias); compressed: NAME-compressed."""
    name, _, alias = (model or f"{default_name}@champion").partition("@")
    if not name or "/" in name:
        fail(f"--model {model!r}: expected NAME@alias (the service follows an alias, not a fixed version)")
    if variant == "compressed" and not name.endswith("-compressed"):
        name = f"{name}-compressed"
    return name, alias or "champion"


def serve(
    model: str | None = typer.Option(
        None, "--model", "-m", help="NAME@alias (default: registry.model_name@champion)"
    ),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback requires a token"),
    port: int = typer.Option(8000, min=0, max=65535, help="port to bind"),
    workers: int = typer.Option(
        1,
        min=1,
        help="uvicorn worker processes; each follows the alias on its own (1 on 2 cores: one "
        "worker already saturates a core, and only one worker guarantees no old answer after a new one)",
    ),
    variant: str = typer.Option("float", help="float | compressed (the <name>-compressed champion)"),
    token: str | None = typer.Option(
        None, "--token", envvar=TOKEN_ENV, help="bearer token clients must send"
    ),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Serve NAME@champion over HTTP: MLflow's /invocations, /predict, /health, /version, /metrics.

    Polls the alias every serve.poll_seconds; a new version is verified, smoke-checked and swapped
    in with no failed request; one that fails a check is never served."""
    settings = _settings(project_dir, config)
    if variant not in ("float", "compressed"):
        fail(f"--variant {variant!r}: expected float or compressed")
    if host not in LOOPBACK and not token:
        fail(f"--host {host}: binding beyond loopback requires a bearer token (--token or {TOKEN_ENV})")
    name, alias = model_ref(model, settings.registry.model_name, variant)
    spec = {"project_dir": str(Path(project_dir).resolve()), "config": config, "name": name, "alias": alias}
    os.environ[SPEC_ENV] = json.dumps(spec)
    if token:
        os.environ[TOKEN_ENV] = token
    import uvicorn

    typer.echo(f"serving {name}@{alias} on http://{host}:{port} ({workers} worker(s))", err=True)
    uvicorn.run(
        "flows.cli_serve:app_from_env", factory=True, host=host, port=port, workers=workers,
        log_level="warning", access_log=False, timeout_graceful_shutdown=5,
    )  # fmt: skip


def app_from_env() -> Any:
    """The uvicorn factory: each worker process builds its follower and app from SPEC_ENV."""
    from modelmill.config import load_project_settings
    from modelmill.errors import ModelmillError
    from tasks.serving.app import create_app
    from tasks.serving.follower import ChampionFollower
    from tasks.tracking import connect

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(os.environ[SPEC_ENV])
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        settings = load_project_settings(spec["project_dir"], spec["config"])
        client, _ = connect(settings, spec["project_dir"])
    except ModelmillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    cfg = settings.serve
    follower = ChampionFollower(
        client, spec["name"], spec["alias"], Path(spec["project_dir"], cfg.cache_dir), cfg.poll_seconds,
        cfg.max_batch, on_reject=rejection_alert(settings, spec["name"]), export_onnx=cfg.onnx_at_load,
    )  # fmt: skip
    torch_threads()
    follower.start()
    inputs = None
    if cfg.log_inputs:
        from modelmill.input_log import InputLog, InputLogLimits

        limits = InputLogLimits(cfg.log_rows_per_file, cfg.log_max_files, cfg.log_flush_seconds)
        inputs = InputLog(Path(spec["project_dir"], cfg.inputs_dir), limits).start()
    return create_app(follower, os.environ.get(TOKEN_ENV) or None, cfg.max_request_bytes, inputs)


def rejection_alert(settings: "Settings", name: str) -> Callable[[str, str], None]:
    """POST a refused version to ops.alert_webhook_url (when configured), like a failed flow run."""
    url = settings.ops.alert_webhook_url

    def alert(version: str, why: str) -> None:
        if url is None:
            return
        from flows.alerts import notify

        text = f"modelmill serve refused {name} v{version}: {settings.redact(why)}"
        notify(url.get_secret_value(), {"flow": "serve", "state": "REJECTED", "markdown": text})

    return alert


def torch_threads() -> None:
    """One intra-op thread per worker: batch-1 requests are latency-bound, and workers share cores.
    A short GIL switch interval: the alias follower's thread (registry polls, a new version's
    download and checks) hands the GIL back to the request loop within 0.5 ms, not 5 ms."""
    import torch

    torch.set_num_threads(int(os.environ.get("MODELMILL_SERVE_THREADS", "1")))
    sys.setswitchinterval(float(os.environ.get("MODELMILL_SERVE_SWITCH_SECONDS", "0.0005")))


registry_app = typer.Typer(help="The model registry's audit history of alias moves.", no_args_is_help=True)


def registry_client(project_dir: str, config: str) -> Any:
    """The project's MLflow client (MLflow's download bars off: one line of output per command)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from tasks.tracking import connect

    return connect(_settings(project_dir, config), project_dir)[0]


@registry_app.command("history")
def registry_history(
    name: str = typer.Argument(..., help="registered model name"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Every alias move modelmill made on NAME: time, actor, alias, from -> to, reason, gate figures."""
    import datetime

    from modelmill.errors import ModelmillError
    from tasks.audit import history

    try:
        records = history(registry_client(project_dir, config), name)
    except ModelmillError as exc:
        fail(str(exc))
    for r in records:
        when = datetime.datetime.fromtimestamp(r.time, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        gate = (
            f"  gate {r.gate.get('metric')} {r.gate.get('challenger')} vs {r.gate.get('champion')}"
            if r.gate
            else ""
        )
        typer.echo(f"{r.seq:>4}  {when}  {r.alias:<10} v{r.from_version or '-'} -> v{r.to_version}  "
                   f"by {r.actor}: {r.reason}{gate}  data {r.data_version or '-'}  "
                   f"{r.hash[:12]}")  # fmt: skip
    if not records:
        typer.echo(f"{name}: no alias moves recorded")


@registry_app.command("verify")
def registry_verify(
    name: str = typer.Argument(..., help="registered model name"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Check NAME's audit chain and that its aliases are where the history says; exit 1 if not."""
    from modelmill.errors import ModelmillError
    from tasks.audit import history, verify

    try:
        client = registry_client(project_dir, config)
        problems, count = verify(client, name), len(history(client, name))
    except ModelmillError as exc:
        fail(str(exc))
    for problem in problems:
        typer.secho(f"{name}: {problem}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{name}: {count} audit records, chain intact, aliases match the history")


def move_champion(
    project_dir: str, config: str, name: str, version: str | None, reason: str, back: bool
) -> None:
    import getpass

    from flows.cli import writer_lock
    from modelmill.errors import ModelmillError
    from tasks.promotion import promote_version, rollback

    settings = _settings(project_dir, config)
    actor = f"cli {getpass.getuser()}"
    try:
        with writer_lock(project_dir, settings, "modelmill rollback" if back else "modelmill promote"):
            client = registry_client(project_dir, config)
            if back:
                move = rollback(client, name, version, reason, actor)
            else:
                move = promote_version(client, name, str(version), reason, actor)
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(f"{name}@champion: v{move.from_version or '-'} -> v{move.to_version} ({reason}); recorded")


def promote_command(
    name: str = typer.Argument(..., help="registered model name"),
    version: str = typer.Argument(..., help="the version to make champion"),
    reason: str = typer.Option("manual promotion", help="why (kept in the audit record)"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Make VERSION the champion of NAME (compare-and-set, recorded; `serve` follows)."""
    move_champion(project_dir, config, name, version, reason, back=False)


def rollback_command(
    name: str = typer.Argument(..., help="registered model name"),
    to: str | None = typer.Option(
        None, "--to", help="version to roll back to (default: the previous champion)"
    ),
    reason: str = typer.Option("rollback", help="why (kept in the audit record)"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Move NAME@champion back to the previous champion (or --to VERSION); recorded; `serve` follows."""
    move_champion(project_dir, config, name, to, reason, back=True)


def resolve_version(client: Any, model: str | None, default_name: str) -> tuple[str, str]:
    """`NAME@alias`, `NAME/VERSION` or `NAME` (@champion) -> (name, version)."""
    from tasks.aliases import alias_target

    ref = model or f"{default_name}@champion"
    if "/" in ref:
        name, version = ref.split("/", 1)
        return name, version
    name, _, alias = ref.partition("@")
    target = alias_target(client, name, alias or "champion")
    if target is None:
        fail(f"{name}@{alias or 'champion'}: no such alias in the registry")
    return name, str(target)


def predict_command(
    source: Path = typer.Argument(
        ..., help="a .csv / .parquet table, a .txt file (one input a line) or an image folder"
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="output .csv or .parquet (default: INPUT.predictions.csv)"
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="NAME@alias or NAME/VERSION (default: the champion)"
    ),
    chunk_size: int = typer.Option(10_000, "--chunk-size", min=1, help="inputs scored at a time"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Score a file with the champion in chunks: id, label, class probabilities and model version."""
    import time

    from rich.console import Console

    from modelmill.batch import count_inputs, predict_file
    from modelmill.errors import ModelmillError
    from modelmill.scoring import scorer_of
    from tasks import progress
    from tasks.modelstore import load_verified

    if not source.exists():
        fail(f"{source}: no such file or folder")
    out = out or source.with_name(f"{source.name}.predictions.csv")
    try:
        client = registry_client(project_dir, config)
        name, version = resolve_version(client, model, _settings(project_dir, config).registry.model_name)
        scorer = scorer_of(load_verified(client, name, version), max_batch=chunk_size)
        progress.enable(Console(stderr=True))
        total = count_inputs(source)
        started = time.perf_counter()
        with progress.bar("predict", total=-(-total // chunk_size) if total else 0, unit="chunk") as bar:
            rows = predict_file(
                scorer, source, out, version, chunk_size, on_chunk=lambda n: bar.advance(f"{n} rows")
            )
        seconds = time.perf_counter() - started
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(
        f"{rows} rows scored by {name} v{version} in {seconds:.2f} s ({rows / seconds:,.0f} rows/s) -> {out}"
    )


def _settings(project_dir: str, config: str) -> "Settings":
    from flows.cli import _settings as cli_settings

    settings: Settings = cli_settings(project_dir, config)
    return settings


def lineage_command(
    model: str | None = typer.Argument(None, help="NAME/VERSION"),
    data: str | None = typer.Option(None, "--data", help="list every version trained on this data version"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Where NAME/VERSION comes from (data, code, config, flow run, study, source model, audit);
    or, with --data VERSION, every model version trained on that data version."""
    from modelmill.errors import ModelmillError
    from tasks.lineage import CONFIG_PREVIEW, version_lineage, versions_of_data

    client = registry_client(project_dir, config)
    if data:
        found = versions_of_data(client, data)
        for name, version in found:
            typer.echo(f"{name}/{version}")
        if not found:
            typer.echo(f"no model version was trained on data version {data}")
        return
    if not model or "/" not in model:
        fail("lineage: give NAME/VERSION, or --data VERSION")
    name, version = str(model).split("/", 1)
    try:
        info = version_lineage(client, name, version)
    except ModelmillError as exc:
        fail(str(exc))
    for key, value in info.items():
        if key == "config":
            shown = {k: v for k, v in sorted(value.items()) if k.startswith(CONFIG_PREVIEW)}
            more = (
                f" (+{len(value) - len(shown)} more in MLflow run {info['mlflow_run_id']})"
                if len(value) > len(shown)
                else ""
            )
            typer.echo(f"{key}: {json.dumps(shown)}{more}")
        elif key == "audit":
            typer.echo(f"audit: {len(value)} record(s)")
            for record in value:
                typer.echo(f"  {record}")
        else:
            typer.echo(f"{key}: {value or '-'}")


def register(app: typer.Typer) -> None:
    app.command("lineage")(lineage_command)
    app.command("predict")(predict_command)
    app.command("serve")(serve)
    app.command("promote")(promote_command)
    app.command("rollback")(rollback_command)
    app.add_typer(registry_app, name="registry")
