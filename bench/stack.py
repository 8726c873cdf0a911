"""Benchmark: the nightly run's wall time through the PostgreSQL stack beside the embedded default.

Two throwaway git + DVC projects of this checkout with the same params.yaml: (a) the embedded
default (Prefect's ephemeral API, MLflow's sqlite store in the project), (b) `modelmill up
--postgres` (the project's own PostgreSQL cluster behind a Prefect server, an MLflow server and the
Optuna storage). Each first gets one untimed run (data bootstrap, databases, a champion), then
`modelmill run --force` (a nightly retrain) `--repeats` times, interleaved, each a fresh process.
Prints the fastest of each and the ratio. No target: the figure tells users what the servers cost.

    python bench/stack.py [--repeats 2] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from skip import make_project  # noqa: E402  (the same throwaway project as bench/skip.py)

from flows import postgres  # noqa: E402
from flows import stack as local_stack  # noqa: E402


def clean_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env["MODELMILL_PROJECT_DIR"] = str(root)
    return env


def run(root: Path, env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", *args, "-C", str(root)],
        cwd=root, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"modelmill run failed in {root}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def project(dest: Path, epochs: int | None) -> Path:
    root = make_project(dest)
    if epochs is not None:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"]["epochs"] = epochs
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (default: params.yaml)")
    args = parser.parse_args()
    try:
        postgres.server_bin()
    except postgres.PostgresError as exc:
        print(f"skipped: {exc}")
        return 0
    base = Path(tempfile.mkdtemp(prefix="modelmill-bench-stack-"))
    base.chmod(0o755)  # as root, the server runs as `postgres` and must reach .modelmill/postgres
    embedded = project(base / "embedded", args.epochs)
    served = project(base / "postgres", args.epochs)
    try:
        started = time.perf_counter()
        stack = local_stack.up(served, with_postgres=True)
        print(f"modelmill up --postgres: {time.perf_counter() - started:.1f} s (untimed below)")
        sides = {
            "embedded sqlite": (embedded, clean_env(embedded)),
            "PostgreSQL stack": (served, stack.env()),
        }
        for label, (root, env) in sides.items():
            print(f"first run, {label} (bootstrap, databases, champion): {run(root, env):.1f} s, untimed")
        times: dict[str, list[float]] = {label: [] for label in sides}
        for i in range(args.repeats):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for label in order:
                times[label].append(run(sides[label][0], sides[label][1], "--force"))
                print(f"[{i + 1}/{args.repeats}] {label}: {times[label][-1]:.1f} s")
        best = {label: min(values) for label, values in times.items()}
        print(f"\n{'side':<18} {'best s':>8}")
        for label, seconds in best.items():
            print(f"{label:<18} {seconds:>8.1f}")
        ratio = best["PostgreSQL stack"] / best["embedded sqlite"]
        print(f"nightly run through the PostgreSQL stack / embedded default: {ratio:.2f}x")
    finally:
        local_stack.down(served)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
