"""Benchmark: the tabular kind's dense network vs scikit-learn on the same hash split, in one run.

    python bench/tabular.py                      # params.yaml defaults, 1 torch thread
    python bench/tabular.py --set train.epochs=100 --set train.patience=10

Per built-in tabular source: test ROC AUC (binary) and accuracy of our model (preprocessor and
early stopping fitted on train/val, as `modelmill run` does), HistGradientBoostingClassifier and
LogisticRegression (both fitted on the train split, on the same preprocessed columns), and the
issue's targets as PASS/MISS lines: breast cancer within 1 point of both, penguins >= 0.97.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, roc_auc_score  # noqa: E402

from modelmill.config import load_settings  # noqa: E402
from modelmill.data import bootstrap, fit_splits, load_dataset  # noqa: E402
from modelmill.kinds import default_model  # noqa: E402
from modelmill.split import split_frame  # noqa: E402
from modelmill.training import predict_proba, train  # noqa: E402


def scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    out = {"accuracy": float(accuracy_score(y, proba.argmax(1)))}
    if proba.shape[1] == 2:
        out["roc_auc"] = float(roc_auc_score(y, proba[:, 1]))
    return out


def run_source(source: str, settings, workdir: Path) -> dict[str, dict[str, float]]:
    ds = load_dataset(bootstrap(workdir / source, source))
    _, xy = fit_splits(split_frame(ds.labeled(), settings.split), ds.schema)
    (x_train, y_train), (x_test, y_test) = xy["train"], xy["test"]
    started = time.perf_counter()
    model = train(default_model(ds.schema, settings.model, _), xy["train"], xy["val"], settings.train).model
    ours = scores(y_test.numpy(), predict_proba(model, x_test).numpy())
    ours["seconds"] = time.perf_counter() - started
    rows = {"modelmill dense": ours}
    for name, estimator in (
        ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=0)),
        ("LogisticRegression", LogisticRegression(max_iter=5000)),
    ):
        started = time.perf_counter()
        estimator.fit(x_train.numpy(), y_train.numpy())
        rows[name] = scores(y_test.numpy(), estimator.predict_proba(x_test.numpy()))
        rows[name]["seconds"] = time.perf_counter() - started
    print(f"\n{source}: {len(y_train)} train / {len(xy['val'][1])} val / {len(y_test)} test rows")
    print(f"  {'model':22} {'accuracy':>9} {'ROC AUC':>9} {'seconds':>8}")
    for name, row in rows.items():
        auc = f"{row['roc_auc']:.4f}" if "roc_auc" in row else "-"
        print(f"  {name:22} {row['accuracy']:9.4f} {auc:>9} {row['seconds']:8.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    config = Path(args.config)
    settings = load_settings(config if config.exists() else None, {"train.num_threads": 1, **extra})
    print(f"train: {settings.train.model_dump()}\nmodel.tabular: {settings.model.tabular.model_dump()}")
    with tempfile.TemporaryDirectory(prefix="modelmill-bench-tabular-") as tmp:
        cancer = run_source("breast_cancer", settings, Path(tmp))
        penguins = run_source("penguins", settings, Path(tmp))
    ours = cancer["modelmill dense"]
    print()
    for ref in ("HistGradientBoosting", "LogisticRegression"):
        for metric in ("roc_auc", "accuracy"):
            gap = (cancer[ref][metric] - ours[metric]) * 100
            verdict = "PASS" if gap <= 1.0 else "MISS"
            print(f"{verdict} breast cancer {metric}: {ours[metric]:.4f} vs {ref} {cancer[ref][metric]:.4f} "
                  f"({gap:+.2f} points behind; target <= 1)")  # fmt: skip
    accuracy = penguins["modelmill dense"]["accuracy"]
    print(f"{'PASS' if accuracy >= 0.97 else 'MISS'} penguins accuracy {accuracy:.4f} (target >= 0.97)")


if __name__ == "__main__":
    main()
