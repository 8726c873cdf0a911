"""Orchestration + tracking overhead: the same training bare and through `modelmill run`.

Same data (Fashion-MNIST from Debian's dataset-fashion-mnist), same split, model, epochs
and seed. (a) a bare PyTorch script: read the Parquet files, train, evaluate, save;
(b) `modelmill run` on a project with that data: DVC sync, GE validation with Data Docs,
training with per-epoch MLflow logging and system metrics, evaluation of challenger and
champion, gate, registry, summary artifact (compression, evaluation beyond accuracy and drift
off: the bare script does none of them, their own benchmarks measure them) — with Prefect's
ephemeral API, and (c) the same
against a running local Prefect server (what `make up` gives, where nightly runs run).

The project is first brought to its nightly steady state by one untimed 1-epoch run (the
MLflow and Prefect databases exist, there is a champion to compare with); its time is
printed. Then each side runs `--repeats` times, interleaved in rotated order, each a fresh
process timed from its start; the table shows the fastest of each. `fixed s` is the time a side spends
outside its training loop minus the bare script's, which does not move with training
speed noise. Target: overhead under 15% of a run whose training takes about a minute.

    python bench/overhead.py [--epochs 8] [--repeats 3] [--width 16] [--skip-server]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

BARE = r"""
import json, sys, time, torch
from modelmill.config import load_settings
from modelmill.data import load_dataset, to_tensors
from modelmill.split import split_frame
from modelmill.models import build_model
from modelmill.training import train
from modelmill.evaluation import evaluate_model
project = sys.argv[1]
settings = load_settings(f"{project}/params.yaml")
ds = load_dataset(f"{project}/data")
parts = split_frame(ds.labeled(), settings.split)
xy = {k: to_tensors(v, ds.schema) for k, v in parts.items()}
model = build_model(ds.schema.image_shape, len(ds.schema.classes), settings.model)
result = train(model, xy["train"], xy["val"], settings.train)
report = evaluate_model(result.model, *xy["test"], list(ds.schema.classes))
torch.save(result.model.state_dict(), f"{project}/bare.pt")
print(json.dumps({"train_seconds": result.seconds, "samples_per_second": result.samples_per_second,
                  "accuracy": report.accuracy}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_project(root: Path, epochs: int, width: int, hidden: int) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["source"] = "fashion_mnist"
    params["train"].update(epochs=epochs, patience=epochs + 1)
    params["model"].update(width=width, hidden=hidden)
    params["registry"]["model_name"] = "fashion-bench"
    params["validation"]["min_rows"] = 1000
    # extra work the bare script does not do: compression, evaluation beyond accuracy (attacks,
    # explanations, calibration: issue 16 has its own <= 25% budget, bench/evaluation.py) and the
    # drift test. What stays is the orchestration and tracking this benchmark measures.
    params["compress"]["enabled"] = False
    params["drift"]["enabled"] = False
    for part in ("robustness", "explanations"):
        params["evaluation"][part]["enabled"] = False
    params["evaluation"]["calibration"]["temperature_scaling"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = clean_env(root)
    subprocess.run(
        [str(BIN / "modelmill"), "data", "bootstrap", "--force"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return root


def clean_env(root: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(MODELMILL_PROJECT_DIR=str(root), **extra)
    return env


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return elapsed, out.stdout


def modelmill_throughput(root: Path) -> tuple[float, float]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("modelmill")
    run = client.search_runs(
        [exp.experiment_id], "tags.flow = 'retrain'", order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    return run.data.metrics["train_samples_per_second"], run.data.metrics["train_seconds"]


def with_server(root: Path):
    port = free_port()
    env = clean_env(
        root,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",  # its own database:
        PREFECT_HOME=str(root / ".modelmill/prefect-server"),
    )
    with open(root / "prefect-server.log", "w") as log:  # the server keeps its own descriptor
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/api"
    import urllib.request

    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("prefect server did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="8: about a minute of training on 2 cores")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side, interleaved")
    parser.add_argument("--skip-server", action="store_true", help="skip (c), the running-server case")
    args = parser.parse_args()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        root = make_project(Path(tmp) / "project", args.epochs, args.width, args.hidden)
        print(
            f"Fashion-MNIST, {args.epochs} epochs, width {args.width}, hidden {args.hidden}; "
            f"{os.cpu_count()} CPUs, torch threads default, {args.repeats} repeats",
            flush=True,
        )
        modelmill = [str(BIN / "modelmill"), "run", "--force"]
        wall, _ = timed([*modelmill, "--epochs", "1"], root, clean_env(root))
        print(
            f"first run on the fresh project (1 epoch; creates the MLflow and Prefect databases, "
            f"registers the first champion): {wall:.1f} s, untimed below",
            flush=True,
        )
        sides = {"bare PyTorch script": None, "modelmill run (ephemeral Prefect API)": clean_env(root)}
        server = None
        if not args.skip_server:
            server, url = with_server(root)
            sides["modelmill run (running Prefect server)"] = clean_env(root, PREFECT_API_URL=url)
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        try:
            order = list(sides)
            for repeat in range(1, args.repeats + 1):
                for name in order[repeat - 1 :] + order[: repeat - 1]:  # rotated: no side always first
                    env = sides[name]
                    if env is None:
                        wall, out = timed([sys.executable, "-c", BARE, str(root)], root, clean_env(root))
                        bare = json.loads(out.strip().splitlines()[-1])
                        runs[name].append((wall, bare["samples_per_second"], bare["train_seconds"]))
                    else:
                        wall, _ = timed(modelmill, root, env)
                        runs[name].append((wall, *modelmill_throughput(root)))
                    print(
                        f"[{repeat}/{args.repeats}] {name}: {wall:.1f} s wall, "
                        f"{runs[name][-1][2]:.1f} s training",
                        flush=True,
                    )
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
        report({name: min(walls) for name, walls in runs.items()})


def report(rows: dict[str, tuple[float, float, float]]) -> None:
    bare_wall, bare_sps, bare_train = rows["bare PyTorch script"]
    print(
        f"\n{'side (fastest of the repeats)':42} {'wall s':>8} {'train s':>8} {'samples/s':>10} "
        f"{'wall ratio':>10} {'overhead':>9} {'fixed s':>8} {'fixed %':>8} {'sps ratio':>9}"
    )
    verdicts = []
    for name, (wall, sps, train_s) in rows.items():
        fixed = (wall - train_s) - (bare_wall - bare_train)
        print(
            f"{name:42} {wall:8.1f} {train_s:8.1f} {sps:10.0f} {wall / bare_wall:10.3f} "
            f"{(wall - bare_wall) / bare_wall:9.1%} {fixed:8.1f} {fixed / bare_wall:8.1%} "
            f"{sps / bare_sps:9.3f}"
        )
        if name != "bare PyTorch script":
            verdicts.append(
                f"{name.split('(')[-1].rstrip(')')}: fixed {fixed / bare_wall:.1%} "
                f"{'PASS' if fixed / bare_wall < 0.15 else 'MISS'}"
            )
    print(
        "\noverhead = (wall - bare wall) / bare wall: moves with the machine's training speed, which"
        "\n  varied by +-10% between runs here (sps ratio); fixed s = time outside the training loop"
        "\n  minus the bare script's (orchestration + tracking), fixed % = fixed s / bare wall."
        "\ntarget < 15% for a ~1 minute training: " + "; ".join(verdicts)
    )


if __name__ == "__main__":
    main()
