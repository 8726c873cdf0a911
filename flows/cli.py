"""The modelmill command line: thin typer commands over the flows (imports stay lazy)."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import typer

from flows.env import configure

app = typer.Typer(
    help="modelmill: nightly retraining of PyTorch models with Prefect, MLflow and DVC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="The versioned dataset (DVC).", no_args_is_help=True)
app.add_typer(data_app, name="data")

ProjectOpt = typer.Option(".", "--project-dir", "-C", help="project folder (params.yaml, data/, mlflow/)")
ConfigOpt = typer.Option("params.yaml", "--config", "-c", help="configuration file, relative to the project")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="print Prefect's and MLflow's logs live")


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def run(
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    epochs: int | None = typer.Option(None, min=1, help="override train.epochs"),
    learning_rate: float | None = typer.Option(None, help="override train.learning_rate"),
    seed: int | None = typer.Option(None, help="override train.seed"),
    gate_tolerance: float | None = typer.Option(None, help="override gate.tolerance"),
    force: bool = typer.Option(False, "--force", help="retrain even when nothing changed"),
    tune: int = typer.Option(0, "--tune", min=0, help="Optuna trials first (0 = off); train with the best"),
    verbose: bool = VerboseOpt,
) -> None:
    """Run the retrain flow once: sync data, validate, split, train, evaluate, gate, register, compress.

    Prints one line per stage and the summary; the full logs go to .modelmill/logs/ (-v: live)."""
    from flows.console import shown_run
    from flows.params import RetrainParams
    from flows.warmup import one_shot_run
    from modelmill.errors import ModelmillError

    try:
        params = RetrainParams(project_dir=project_dir, config=config, epochs=epochs,
                               learning_rate=learning_rate, seed=seed,
                               gate_tolerance=gate_tolerance, force=force, tune=tune)  # fmt: skip
        settings = params.settings()  # a config error fails here, before Prefect starts
        # the lock before Prefect: a second writer waits here, not racing for the ephemeral API
        lock = writer_lock(project_dir, settings, "modelmill run")
        with lock, one_shot_run(), shown_run(project_dir, "run", verbose):
            from flows.retrain import retrain

            summary = retrain(params)
    except ModelmillError as exc:
        fail(str(exc))
    print_summary(summary)


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if summary.get("skipped") == "no drift":
        console.print(f"[green]no drift[/] in data version {summary['data_version']} against the "
                      "champion's: not retrained (drift.on_drift: retrain)")  # fmt: skip
        return
    ev, reg = summary["evaluation"], summary["registry"]
    if summary.get("skipped"):
        console.print(
            f"[yellow]nothing changed since MLflow run {summary['reused_run_id']}: "
            "skipped retraining, its results below[/] (--force retrains)"
        )
    table = Table(title=f"retrain on data version {summary['data_version']}")
    table.add_column("test metric")
    table.add_column("challenger", justify="right")
    table.add_column(f"champion v{ev['champion_version']}" if ev["champion"] else "champion", justify="right")
    for key in ("accuracy", "macro_f1", "macro_precision", "macro_recall"):
        champ = f"{ev['champion'][key]:.4f}" if ev["champion"] else "-"
        table.add_row(key, f"{ev['challenger'][key]:.4f}", champ)
    console.print(table)
    verdict = (
        "[green]promoted to champion[/]"
        if reg["promoted"]
        else f"[yellow]not promoted[/] (champion stays v{reg['champion_version']})"
    )
    console.print(f"model [bold]{reg['name']}[/] version {reg['version']}: {verdict}")
    console.print(f"gate: {summary['gate_reason']}")
    console.print(
        f"MLflow run {summary['mlflow_run_id']} — open the UI with [bold]make ui[/] "
        f"(or `modelmill ui`) at http://127.0.0.1:5000"
    )


@app.command("drift")
def drift_command(
    reference: str = typer.Option("champion", "--from", help="data version md5, git revision, champion"),
    current: str = typer.Option(
        "workspace", "--to", help="as --from, workspace, or a CSV / Parquet / folder of inputs"
    ),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="exit 1 when drift is detected"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Compare two data versions (or a data version and inputs) through the champion: MMD on its
    embeddings, label, prediction and per-feature tests. Exit 1 on drift with --fail-on-drift."""
    from flows.console import shown_run
    from flows.params import DriftParams
    from flows.warmup import one_shot_run
    from modelmill.errors import ModelmillError

    if Path(current).exists():  # inputs on disk: relative to where the command runs
        current = str(Path(current).resolve())
    try:
        params = DriftParams(project_dir=project_dir, config=config, reference=reference, current=current)
        params.settings()
        with one_shot_run(), shown_run(project_dir, "drift", verbose):
            from flows.drift import drift

            result = drift(params)
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(result["markdown"])
    typer.echo(f"MLflow run {result['mlflow_run_id']} (artifacts drift/drift.html, drift/drift.json)")
    raise typer.Exit(1 if result["drifted"] and fail_on_drift else 0)


@app.command("tune")
def tune_command(
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    trials: int | None = typer.Option(None, min=1, help="trials in the study in total (tune.trials)"),
    timeout: float | None = typer.Option(None, help="seconds for this run (tune.timeout)"),
    workers: int | None = typer.Option(None, min=1, help="trials at once, in processes (tune.workers)"),
    pruner: str | None = typer.Option(None, help="hyperband | median | none (tune.pruner)"),
    storage: str | None = typer.Option(None, help="Optuna storage URL (tune.storage)"),
    cluster: str | None = typer.Option(
        None, help="trials on Dask: local:N worker processes or tcp://HOST:8786 (tune.cluster)"
    ),
    dashboard: bool = typer.Option(
        False, "--dashboard", help="open optuna-dashboard over the storage instead"
    ),
    port: int = typer.Option(8080, help="dashboard port on 127.0.0.1"),
    verbose: bool = VerboseOpt,
) -> None:
    """Tune hyperparameters: a pruned, resumable Optuna study; every trial an MLflow run."""
    from flows.console import shown_run
    from flows.params import TuneParams
    from flows.tune import tune
    from modelmill.errors import ModelmillError

    try:
        params = TuneParams(
            project_dir=project_dir,
            config=config,
            trials=trials,
            timeout=timeout,
            workers=workers,
            pruner=pruner,
            storage=storage,
            cluster=cluster,
        )
        settings = params.settings()  # a config error fails here, before Prefect starts
        if dashboard:
            raise typer.Exit(open_dashboard(settings, project_dir, port))
        with shown_run(project_dir, "tune", verbose):
            result = tune(params)
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(
        f"study {result['study_name']}: best value {result['best_value']} "
        f"(trial {result['best_trial']}); trials {result['states']}"
    )
    for key, value in result["best_params"].items():
        typer.echo(f"  {key} = {value}")


def open_dashboard(settings, project_dir: str, port: int) -> int:
    """optuna-dashboard on 127.0.0.1 over the study storage (blocks; Ctrl-C stops it)."""
    import optuna_dashboard

    from modelmill.secrets import mask_url
    from modelmill.tuning import create_schema, resolve_storage_url

    url = resolve_storage_url(settings.tune.storage.get_secret_value(), project_dir)
    create_schema(url, settings.tune)
    typer.echo(f"optuna-dashboard on http://127.0.0.1:{port} over {mask_url(url)} (Ctrl-C stops it)")
    optuna_dashboard.run_server(url, host="127.0.0.1", port=port)
    return 0


@app.command("compress")
def compress_command(
    model: str | None = typer.Option(
        None, "--model", "-m", help="NAME@alias or NAME/version (default: registry.model_name@champion)"
    ),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    budget_points: float | None = typer.Option(None, help="override compress.budget_points"),
    select_by: str | None = typer.Option(None, help="override compress.select_by: size | latency"),
    verbose: bool = VerboseOpt,
) -> None:
    """Compress a registered model version; register the best variant within budget as NAME-compressed."""
    from flows.compress import compress
    from flows.console import shown_run
    from flows.params import CompressParams
    from modelmill.errors import ModelmillError

    try:
        params = CompressParams(
            project_dir=project_dir,
            config=config,
            model=model,
            budget_points=budget_points,
            select_by=select_by,
        )
        with (
            writer_lock(project_dir, params.settings(), "modelmill compress"),
            shown_run(project_dir, "compress", verbose),
        ):
            summary = compress(params)
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(summary["markdown"])


@data_app.command("bootstrap")
def data_bootstrap(
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    source: str | None = typer.Option(None, help="dataset source (default: data.source of the config)"),
    force: bool = typer.Option(False, "--force", help="rewrite the data folder even when it exists"),
) -> None:
    """Write the built-in dataset into data/ (byte for byte the same everywhere) and `dvc add` it."""
    from modelmill.data import missing_files
    from modelmill.errors import ModelmillError
    from modelmill.lock import project_lock
    from tasks.data import bootstrap_data, version_data

    try:
        settings = _settings(project_dir, config, {"data.source": source})
        data_dir = Path(project_dir, settings.data.dir)
        with project_lock(project_dir, "data bootstrap", settings.data.lock_timeout):
            if missing_files(data_dir) or force:
                typer.echo(f"writing {settings.data.source} into {data_dir} ...")
                version = bootstrap_data(project_dir, settings)
            else:
                typer.echo(f"{data_dir} already holds a dataset (use --force to rewrite it)")
                version = version_data(project_dir, settings, "data bootstrap")
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(f"data version {version} ({settings.data.dir}.dvc)")


@data_app.command("import")
def data_import(
    path: Path = typer.Argument(
        ..., help="a CSV/Parquet file, or a folder with one subfolder of images per class"
    ),
    target: str | None = typer.Option(None, help="tabular, text: the label column (default: 'target')"),
    text: str | None = typer.Option(
        None, "--text", help="text: the column of texts (makes it the text kind)"
    ),
    id_column: str | None = typer.Option(None, "--id", help="tabular: the id column (default: row numbers)"),
    kind: str | None = typer.Option(None, help="image | tabular | text (default: from PATH and --text)"),
    name: str | None = typer.Option(None, help="dataset name in dataset.json (default: PATH's stem)"),
    size: str | None = typer.Option(None, help="image: HEIGHTxWIDTH to resize to (default: data.image_size)"),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
) -> None:
    """Import your own data as the dataset: a new DVC data version, pushed.

    \b
    Examples:
      tabular: modelmill data import customers.csv --target churned --id customer_id
               modelmill data import events.parquet --target label
      text:    modelmill data import tickets.csv --text body --target queue --id ticket_id
      image:   modelmill data import photos/ --size 64x64   (photos/cat/*.jpg, photos/dog/*.png, ...)

    Columns are inferred and recorded in data/dataset.json (numeric: range; categorical:
    values). Bad input is one line naming the file, row and column; data/ stays as it was.
    """
    from prefect.logging import disable_run_logger

    from modelmill.data.imports import import_data
    from modelmill.errors import ModelmillError
    from tasks.data import push_data, version_data

    overrides = {"data.image_size": _size(size) if size else None}
    settings = _settings(project_dir, config, overrides)
    try:
        # one writer of data/ at a time: a retrain or label import waits, or names this holder
        with writer_lock(project_dir, settings, "modelmill data import"):
            result = import_data(
                path,
                Path(project_dir, settings.data.dir),
                kind=kind,
                target=target,
                id_column=id_column,
                name=name,
                image_size=settings.data.image_size,
                text=text,
            )
            version = version_data(project_dir, settings, f"data import {path.name}")
            with disable_run_logger():
                pushed = push_data.fn(project_dir, settings)
    except ModelmillError as exc:
        fail(str(exc))
    columns = ", ".join(f"{k} ({v})" for k, v in list(result.columns.items())[:12])
    typer.echo(
        f"{result.kind} dataset '{result.name}': {result.items} items, {result.labeled} labeled, "
        f"classes {list(result.classes)[:10]}; columns: {columns}"
    )
    typer.echo(f"data version {version} ({settings.data.dir}.dvc), {pushed} files pushed")


def _size(text: str) -> list[int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"--size {text}: expected HEIGHTxWIDTH, e.g. 32x32")
    return [height, width]


@data_app.command("status")
def data_status(project_dir: str = ProjectOpt, config: str = ConfigOpt) -> None:
    """Print the data version recorded in data.dvc and whether data/ matches it."""
    from modelmill.errors import ModelmillError
    from tasks.data import data_version, dvc_status

    try:
        settings = _settings(project_dir, config)
        version, status = data_version(project_dir, settings), dvc_status(project_dir, settings)
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(f"data version {version}: " + ("up to date" if not status else f"changed {status}"))


@app.command("import-labels")
def import_labels_cmd(
    paths: list[Path] | None = typer.Argument(
        None, help="Label Studio exports (JSON, JSON-MIN, CSV); none: the new files in labels.inbox"
    ),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    strategy: str | None = typer.Option(None, help="override labels.strategy (majority | dawid_skene)"),
    min_agreement: float | None = typer.Option(None, help="override labels.min_agreement"),
    strict: bool | None = typer.Option(None, "--strict/--skip-bad-rows", help="override labels.strict"),
    verbose: bool = VerboseOpt,
) -> None:
    """Import Label Studio exports: consensus labels, archived export, a new data version."""
    from pydantic import ValidationError

    from flows.console import shown_run
    from flows.import_labels import import_labels
    from flows.params import ImportLabelsParams
    from modelmill.errors import ModelmillError

    try:
        params = ImportLabelsParams(
            project_dir=project_dir,
            config=config,
            paths=[str(p.resolve()) for p in paths or []],
            strategy=strategy,
            min_agreement=min_agreement,
            strict=strict,
        )
        with (
            writer_lock(project_dir, params.settings(), "modelmill import-labels"),
            shown_run(project_dir, "import-labels", verbose),
        ):
            result = import_labels(params)
    except ValidationError as exc:
        fail(str(exc).splitlines()[0] + ": " + "; ".join(e["msg"] for e in exc.errors()))
    except ModelmillError as exc:
        fail(str(exc))
    print_import(result)


def print_import(result: dict) -> None:
    if not result.get("files"):
        typer.echo(f"no new exports; data version {result['data_version_after']}")
        return
    m = result["metrics"]
    typer.echo(
        f"{int(m['tasks'])} tasks, {int(m['annotations_used'])} annotations used, "
        f"{int(m['annotations_ignored'])} ignored {result['ignored'] or ''}, "
        f"{int(m['annotations_skipped'])} skipped {result['skipped'] or ''}"
    )
    typer.echo(
        f"labels: {int(m['labels_new'])} new, {int(m['labels_changed'])} changed, "
        f"{int(m['labels_unchanged'])} unchanged; {int(m['items_for_review'])} items for review"
    )
    kappa = {k: v for k, v in m.items() if k.startswith("kappa_")}
    typer.echo(f"agreement: {kappa or 'n/a'}, mean item agreement {m.get('mean_item_agreement', 'n/a')}")
    for problem in result["problems"][:10]:
        typer.echo(f"skipped: {problem}")
    verdict = "new data version" if result["changed"] else "unchanged: data version"
    typer.echo(
        f"{verdict} {result['data_version_after']} (was {result['data_version_before']}); "
        f"MLflow run {result['mlflow_run_id']}"
    )


@app.command("export-tasks")
def export_tasks_cmd(
    out: Path = typer.Option(
        Path("labels/outbox"), "--out", "-o", help="folder for tasks.json + labeling_config.xml"
    ),
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    count: int | None = typer.Option(None, min=1, help="override labels.export_count"),
    method: str | None = typer.Option(None, help="override labels.uncertainty (margin | entropy)"),
    include_labeled: bool = typer.Option(False, "--include-labeled", help="also export labeled items"),
) -> None:
    """Write a Label Studio import file of the items the champion is least sure about."""
    from modelmill.errors import ModelmillError
    from tasks.labels import export_uncertain_tasks

    settings = _settings(project_dir, config, {"labels.uncertainty": method})
    try:
        result = export_uncertain_tasks(
            project_dir, settings, out, count=count, include_labeled=include_labeled
        )
    except ModelmillError as exc:
        fail(str(exc))
    typer.echo(
        f"{result['count']} tasks ({result['method']}, champion {result['model_version']}) -> "
        f"{result['tasks']}; labeling config -> {result['labeling_config']}"
    )


@app.command()
def doctor(project_dir: str = ProjectOpt, config: str = ConfigOpt) -> None:
    """Check data/ vs data.dvc vs the DVC cache and remote, the champion, runs, work folders, the lock."""
    from flows.doctor import diagnose
    from modelmill.errors import ModelmillError

    try:
        findings = diagnose(project_dir, _settings(project_dir, config))
    except ModelmillError as exc:
        fail(str(exc))
    for finding in findings:
        typer.echo(finding.line())
    problems = sum(not f.ok for f in findings)
    typer.echo(f"{problems} problem(s)" if problems else "all good")
    raise typer.Exit(1 if problems else 0)


@app.command()
def ui(
    project_dir: str = ProjectOpt,
    config: str = ConfigOpt,
    port: int = typer.Option(5000, help="port on 127.0.0.1"),
) -> None:
    """Open the MLflow UI over the project's tracking store (127.0.0.1 only)."""
    from modelmill.secrets import mask_url
    from tasks.tracking import tracking_uri

    settings = _settings(project_dir, config)
    uri = tracking_uri(settings, project_dir)
    artifacts = Path(project_dir, settings.tracking.artifacts_dir).resolve()
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} over {mask_url(uri)} (Ctrl-C stops it)")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        str(artifacts),
    ]
    raise typer.Exit(subprocess.call(cmd, env=env))


@app.command()
def up(
    project_dir: str = ProjectOpt,
    postgres: bool = typer.Option(
        False, "--postgres", help="run Prefect, MLflow and Optuna on the project's own PostgreSQL"
    ),
) -> None:
    """Start the local stack (Prefect server, process worker, MLflow server) and deploy prefect.yaml."""
    from flows.stack import main as stack_main

    raise typer.Exit(stack_main(["up", project_dir, *(["--postgres"] if postgres else [])]))


@app.command()
def down(project_dir: str = ProjectOpt) -> None:
    """Stop the processes `modelmill up` started (by their PIDs)."""
    from flows.stack import main as stack_main

    raise typer.Exit(stack_main(["down", project_dir]))


def writer_lock(project_dir: str, settings, command: str):
    """The project lock for a writer command (the flow takes it again, re-entrantly)."""
    from modelmill.lock import project_lock

    return project_lock(project_dir, command, settings.data.lock_timeout)


def _settings(project_dir: str, config: str, overrides: dict | None = None):
    from modelmill.config import load_project_settings
    from modelmill.errors import ModelmillError

    try:
        return load_project_settings(project_dir, config, overrides)
    except ModelmillError as exc:
        fail(str(exc))


__import__("flows.cli_serve").cli_serve.register(app)  # serve, predict, registry, promote, rollback, lineage


def main() -> None:
    from flows.console import quiet_environment, verbose_requested
    from flows.env import project_dir_from_argv

    configure(project_dir_from_argv())  # -C decides where Prefect's home and the logs are
    quiet_environment(verbose_requested())
    try:
        app()
    finally:
        # exit without a garbage collection over the whole stack's objects (1.5 s of teardown);
        # atexit handlers (Prefect's server stop, log and event flushes) still run
        gc.freeze()


if __name__ == "__main__":
    main()
