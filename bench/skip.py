"""Benchmark: cost of an unchanged nightly run (skip-if-unchanged) against a full retrain.

Builds a throwaway git + DVC project from this checkout, then, in one process (Prefect's
ephemeral API in the project's state folder): a warm-up run (imports, data bootstrap; not timed), a full run
(`force`), and an unchanged run that Prefect's cache answers. Prints the two wall times and
their ratio (target: at most 0.05, issue 10), and writes bench/results/skip.json.

    python bench/skip.py [--epochs N]     # N defaults to train.epochs of params.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.05  # an unchanged nightly run costs at most 5% of a full one
SOURCES = (
    "modelmill",
    "tasks",
    "flows",
    "prefect.yaml",  # bench/stack.py deploys it
    "params.yaml",
    "pyproject.toml",
    ".dvc",
    ".dvcignore",
    ".gitignore",
    "data.dvc",
)


def make_project(dest: Path) -> Path:
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@modelmill.invalid"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench project"]):
        subprocess.run(git + argv, cwd=dest, check=True, capture_output=True)
    return dest


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the full run")
    args = parser.parse_args()
    project = make_project(Path(tempfile.mkdtemp(prefix="modelmill-bench-skip-")))
    sys.path.insert(0, str(REPO))
    from flows.env import configure

    configure(project)
    os.chdir(project)
    from flows.retrain import RetrainParams, retrain

    base = RetrainParams(project_dir=str(project), epochs=args.epochs)
    retrain(base.model_copy(update={"epochs": 1, "seed": 1}))  # warm-up: Prefect API, imports, data
    full_s, full = timed(retrain, base.model_copy(update={"force": True}))
    skip_s, skipped = timed(retrain, base)
    assert "skipped" not in full and skipped.get("skipped") == "unchanged", "the unchanged run retrained"
    ratio = skip_s / full_s
    rows = [("full retrain (force)", full_s), ("unchanged nightly run (cache hit)", skip_s)]
    print(f"{'run':<36} {'wall s':>8}")
    for name, seconds in rows:
        print(f"{name:<36} {seconds:8.2f}")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"{'ratio unchanged / full':<36} {ratio:8.3f}   target <= {TARGET}: {verdict}")
    out = REPO / "bench" / "results" / "skip.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"full_s": full_s, "unchanged_s": skip_s, "ratio": ratio, "epochs": args.epochs or "params.yaml"},
            indent=2,
        )
    )
    shutil.rmtree(project, ignore_errors=True)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
