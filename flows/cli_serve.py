"""`modelmill serve`: the HTTP service of the champion (FastAPI + uvicorn), following the alias."""

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

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
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes (each follows the alias)"),
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
    from flows.cli import _settings

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
    try:
        settings = load_project_settings(spec["project_dir"], spec["config"])
        client, _ = connect(settings, spec["project_dir"])
    except ModelmillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    cfg = settings.serve
    follower = ChampionFollower(
        client, spec["name"], spec["alias"], Path(spec["project_dir"], cfg.cache_dir), cfg.poll_seconds,
        cfg.max_batch, on_reject=rejection_alert(settings, spec["name"]),
    )  # fmt: skip
    follower.start()
    torch_threads()
    return create_app(follower, os.environ.get(TOKEN_ENV) or None, cfg.max_request_bytes)


def rejection_alert(settings: Settings, name: str) -> Callable[[str, str], None]:
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
    """One intra-op thread per worker: batch-1 requests are latency-bound, and workers share cores."""
    import torch

    torch.set_num_threads(int(os.environ.get("MODELMILL_SERVE_THREADS", "1")))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
