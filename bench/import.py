"""Benchmark: import of a Label Studio JSON export with 100,000 tasks x 3 annotators.

Prints wall time and peak memory (max RSS of a fresh child process) of `import_exports`
against a reference: `json.load` of the same file (what a non-streaming parser costs before
doing any work). Target: under 30 s and under 1 GiB.

    python bench/import.py [--tasks 100000] [--annotators 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import labelstudio_sim as sim  # noqa: E402

CLASSES = tuple(str(d) for d in range(10))


def make_data(data_dir: Path, n_items: int) -> list[str]:
    import pandas as pd

    from modelmill.data import Dataset, DatasetSchema, write_dataset

    schema = DatasetSchema(name="bench", classes=CLASSES, image_shape=(8, 8), pixel_range=(0.0, 16.0))
    rng = np.random.default_rng(0)
    ids = [f"b-{i:06d}" for i in range(n_items)]
    items = pd.DataFrame(rng.integers(0, 17, (n_items, 64), dtype=np.uint8), columns=schema.feature_columns)
    items.insert(0, "item_id", ids)
    labels = pd.DataFrame({"item_id": ids[:1000], "label": "0", "source": "bootstrap"})
    write_dataset(data_dir, Dataset(schema, items, labels))
    return ids


def write_export(path: Path, ids: list[str], annotators: int) -> None:
    """A realistic full JSON export, written task by task (the generator stays small too)."""
    from modelmill.labels.tasks_export import png_data_uri

    rng = np.random.default_rng(1)
    image = png_data_uri(rng.integers(0, 17, 64), (8, 8), (0.0, 16.0))
    truth = rng.integers(0, 10, len(ids))
    ann_id = 1
    with path.open("w") as out:
        out.write("[")
        for t, item_id in enumerate(ids):
            anns = []
            for a in range(1, annotators + 1):
                label = str(truth[t]) if rng.random() < 0.85 else str(rng.integers(0, 10))
                anns.append(
                    sim.annotation(
                        ann_id, a, label, minute=t % 60, as_object=a == 1, cancelled=rng.random() < 0.01
                    )
                )
                ann_id += 1
            task = sim.task(t + 1, item_id, anns, predictions=[str(truth[t])], image=image)
            out.write(("," if t else "") + json.dumps(task))
        out.write("]")


def child(mode: str, data_dir: str, export: str) -> None:
    start = time.perf_counter()
    if mode == "import":
        from modelmill.config import LabelsConfig
        from modelmill.labels import import_exports

        report = import_exports(data_dir, [export], LabelsConfig())
        detail = (
            f"{report.tasks} tasks, {report.used} votes used, {report.labels_new} new labels, "
            f"{len(report.review)} for review, kappa {report.resolution.kappa}, "
            f"files written: {len(report.written)}"
        )
    else:
        with open(export) as f:
            detail = f"{len(json.load(f))} tasks loaded"
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "detail": detail}))


def run(mode: str, data_dir: Path, export: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(data_dir), str(export)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp dir)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    ids = make_data(work / "data", args.tasks)
    export = work / "export.json"
    start = time.perf_counter()
    write_export(export, ids, args.annotators)
    size_mb = export.stat().st_size / 2**20
    print(
        f"export: {args.tasks:,} tasks x {args.annotators} annotators, {size_mb:.0f} MB "
        f"(generated in {time.perf_counter() - start:.1f} s)"
    )
    reference = run("json.load", work / "data", export)
    result = run("import", work / "data", export)
    again = run("import", work / "data", export)
    print(f"{'step':<34}{'seconds':>9}{'peak MB':>10}{'time x ref':>12}{'mem x ref':>11}")
    for name, row in (
        ("reference: json.load (parse only)", reference),
        ("modelmill import_exports (all)", result),
        ("same export again (no-op)", again),
    ):
        print(
            f"{name:<34}{row['seconds']:>9.1f}{row['peak_mb']:>10.0f}"
            f"{row['seconds'] / reference['seconds']:>12.2f}{row['peak_mb'] / reference['peak_mb']:>11.2f}"
        )
    print(f"import: {result['detail']}")
    ok = result["seconds"] < 30 and result["peak_mb"] < 1024
    print(f"target (< 30 s, < 1024 MB): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
