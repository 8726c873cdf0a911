"""Evaluation with and without the extras (intervals, calibration, robustness, explanations) on the
default digits workload, side by side with the time of the run they belong to.

A model is trained with the default configuration (params.yaml: 30 epochs, early stopping), then
timed once: the plain evaluation (metrics + confusion matrix), the extras part by part, and the
paired bootstrap against a second model (what the gate adds when there is a champion). The
denominator is the in-process training + plain evaluation (a lower bound of a `modelmill run`, so
the percentage is an upper bound); `--run` also times a real `modelmill run` on a clone of this
repository (DVC, GE, MLflow, Prefect: minutes on a busy machine) and uses that. Target: extras
<= 25% of a default digits run.

    python bench/evaluation.py [--epochs N] [--threads 1] [--run]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def train_default(epochs: int | None, threads: int):
    from modelmill.config import load_settings
    from modelmill.data import bootstrap, load_dataset, to_tensors
    from modelmill.models import build_model
    from modelmill.split import split_frame
    from modelmill.training import train

    settings = load_settings(REPO / "params.yaml", {"train.epochs": epochs, "train.num_threads": threads})
    data_dir = Path(tempfile.mkdtemp(prefix="bench-evaluation-")) / "data"
    bootstrap(data_dir, settings.data.source)
    ds = load_dataset(data_dir)
    xy = {k: to_tensors(v, ds.schema) for k, v in split_frame(ds.labeled(), settings.split).items()}
    model = build_model(ds.schema.image_shape, len(ds.schema.classes), settings.model)
    result = train(model, xy["train"], xy["val"], settings.train)
    return settings, xy, list(ds.schema.classes), result, data_dir.parent


def timed_run(threads: int) -> float:
    """Wall time of `modelmill run` (defaults) in a fresh clone, from process start."""
    root = Path(tempfile.mkdtemp(prefix="bench-evaluation-run-")) / "project"
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    cli = str(Path(sys.executable).with_name("modelmill"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(PYTHONPATH=str(root), MODELMILL_PROJECT_DIR=str(root))
    subprocess.run([cli, "data", "bootstrap", "--force"], cwd=root, env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run([cli, "run"], cwd=root, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: params.yaml's train.epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the box is shared)")
    parser.add_argument("--run", action="store_true", help="also time a real `modelmill run`")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from modelmill.evaluation import evaluate_model, plot_confusion_matrix
    from modelmill.evaluation.intervals import paired_bootstrap
    from modelmill.evaluation.suite import run_suite

    settings, xy, classes, trained, work = train_default(args.epochs, args.threads)
    start = time.perf_counter()
    report = evaluate_model(trained.model, *xy["test"], classes)
    plot_confusion_matrix(report, work / "cm.png")
    plain = time.perf_counter() - start
    start = time.perf_counter()
    suite = run_suite(
        trained.model, xy["val"], xy["test"], xy["train"][0], classes, settings.evaluation, work
    )
    extras = time.perf_counter() - start
    start = time.perf_counter()
    rival = suite.test_pred.copy()
    rival[:5] = (rival[:5] + 1) % len(classes)
    ic = settings.evaluation.intervals
    paired_bootstrap(
        xy["test"][1].numpy(), suite.test_pred, rival, len(classes), ic.resamples, ic.level, ic.seed
    )
    paired = time.perf_counter() - start

    base, label = trained.seconds + plain, "training + plain evaluation (lower bound of a run)"
    if args.run:
        base, label = timed_run(args.threads), "`modelmill run` (defaults, fresh clone)"
    print(
        f"digits, default config: {trained.best_epoch} best / {len(trained.history)} epochs, "
        f"test n = {report.n}, accuracy {report.accuracy:.4f}, {args.threads} thread(s)\n"
    )
    print(f"| part | seconds | % of {label} |\n| --- | --- | --- |")
    rows = [("training", trained.seconds), ("plain evaluation", plain)]
    rows += [(f"extras: {k}", v) for k, v in suite.seconds.items()] + [("extras: paired bootstrap", paired)]
    rows += [("extras, total", extras + paired), (label, base)]
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {100 * seconds / base:.1f}% |")
    share = (extras + paired) / base
    print(
        f"\nevaluation without extras {plain:.2f} s, with extras {plain + extras + paired:.2f} s; "
        f"extras = {share:.1%} of the run: {'PASS' if share <= 0.25 else 'MISS'} (target <= 25%)"
    )
    print(f"failed sanity checks: {suite.failed_checks() or 'none'}")


if __name__ == "__main__":
    main()
