"""Evaluation with and without the extras (robustness, explanations, temperature scaling) on the
default digits workload, side by side, each inside a real `modelmill run`.

A fresh clone of this repository is bootstrapped and brought to its nightly steady state by one
untimed 1-epoch run (the stores exist, there is a champion to pair with). Then two `--force` runs
with the default configuration, timed from process start: extras off (params-noextras.yaml) and
extras on (params.yaml). Compression is off in both (it runs only when the gate promotes, which
would differ between the two). The run's own `evaluation_seconds_*` metrics give the extras part by
part. Intervals and ECE are not switchable and are in both. Target: the extras add <= 25%.

    python bench/evaluation.py [--epochs N]   (default: params.yaml's train.epochs)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("modelmill"))
NO_EXTRAS = {"robustness": {"enabled": False}, "explanations": {"enabled": False},
             "calibration": {"temperature_scaling": False}}  # fmt: skip


def make_project(epochs: int | None) -> tuple[Path, dict[str, str]]:
    root = Path(tempfile.mkdtemp(prefix="bench-evaluation-")) / "project"
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["compress"]["enabled"] = False
    if epochs:
        params["train"]["epochs"] = epochs
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for section, values in NO_EXTRAS.items():
        params.setdefault("evaluation", {}).setdefault(section, {}).update(values)
    (root / "params-noextras.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(PYTHONPATH=str(root), MODELMILL_PROJECT_DIR=str(root))
    modelmill(root, env, "data", "bootstrap", "--force")
    return root, env


def modelmill(root: Path, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    out = subprocess.run([CLI, *args], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"modelmill {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def last_run_metrics(root: Path) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("modelmill")
    run = client.search_runs([exp.experiment_id], "tags.flow = 'retrain'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]  # fmt: skip
    return run.data.metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: params.yaml's train.epochs")
    args = parser.parse_args()
    root, env = make_project(args.epochs)
    warm = modelmill(root, env, "run", "--epochs", "1")
    off = modelmill(root, env, "run", "--force", "--config", "params-noextras.yaml")
    off_metrics = last_run_metrics(root)
    on = modelmill(root, env, "run", "--force")
    on_metrics = last_run_metrics(root)
    parts = {
        k.removeprefix("evaluation_seconds_"): v
        for k, v in on_metrics.items()
        if k.startswith("evaluation_seconds_")
    }
    print(f"digits, default config (compression off), warm-up run {warm:.1f} s (untimed)")
    acc_off, acc_on = off_metrics["test_accuracy"], on_metrics["test_accuracy"]
    print(f"test accuracy: without extras {acc_off:.4f}, with {acc_on:.4f}\n")
    print("| `modelmill run` | wall s | training s | evaluation extras s |\n| --- | --- | --- | --- |")
    train_off, train_on = (m.get("train_seconds", float("nan")) for m in (off_metrics, on_metrics))
    print(f"| without extras | {off:.1f} | {train_off:.1f} | - |")
    print(f"| with extras | {on:.1f} | {train_on:.1f} | {sum(parts.values()):.1f} |")
    print("\n| extra (inside the run) | seconds | % of the run without extras |\n| --- | --- | --- |")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.2f} | {100 * seconds / off:.1f}% |")
    share = sum(parts.values()) / off
    print(
        f"\nextras (their own timers) = {share:.1%} of a run without them; wall difference "
        f"{on - off:+.1f} s ({(on - off) / off:+.1%}): {'PASS' if share <= 0.25 else 'MISS'} (target <= 25%)"
    )


if __name__ == "__main__":
    main()
