"""Benchmark: `modelmill data import` of a generated CSV beside `pandas.read_csv` of the same file.

    python bench/data_import.py                 # 1,000,000 rows x 20 columns (+ target)
    python bench/data_import.py --rows 100000

Each side runs in its own process, which reports its wall time and peak resident memory
(ru_maxrss). Targets (issue 11): the import <= 60 s and <= 2 GiB.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NUMERIC, CATEGORICAL = 16, 4


def generate(path: Path, rows: int) -> None:
    """numeric (with 1% missing), categorical (5-50 values) and a binary target, in 100k-row chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    with pacsv.CSVWriter(path, _schema(pa)) as out:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            cols = {}
            for j in range(NUMERIC):
                values = rng.normal(j, 1 + j, n)
                cols[f"x{j}"] = pa.array(values, mask=rng.random(n) < 0.01)
            for j in range(CATEGORICAL):
                cols[f"c{j}"] = pa.array(rng.integers(0, 5 + 15 * j, n).astype(str).astype(object) + "_v")
            cols["target"] = pa.array(np.where(rng.random(n) < 0.3, "yes", "no"))
            out.write_table(pa.table(cols, schema=_schema(pa)))


def _schema(pa):
    numeric = [(f"x{j}", pa.float64()) for j in range(NUMERIC)]
    categorical = [(f"c{j}", pa.string()) for j in range(CATEGORICAL)]
    return pa.schema([*numeric, *categorical, ("target", pa.string())])


def side(name: str, csv: Path, out: Path) -> None:
    """One measured side, in this (fresh) process; prints a JSON line."""
    started = time.perf_counter()
    if name == "modelmill":
        from modelmill.data.imports import import_data

        result = import_data(csv, out / "data", target="target")
        rows = result.items
    else:
        import pandas as pd

        rows = len(pd.read_csv(csv))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"side": name, "seconds": seconds, "peak_bytes": peak, "rows": rows}))


def measure(name: str, csv: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--side", name, "--csv", str(csv), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name} side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--csv", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, Path(args.csv), Path(args.out))
        return
    with tempfile.TemporaryDirectory(prefix="modelmill-bench-import-") as tmp:
        csv = Path(tmp) / "table.csv"
        started = time.perf_counter()
        generate(csv, args.rows)
        size = csv.stat().st_size
        print(f"generated {args.rows:,} rows x {NUMERIC + CATEGORICAL} columns + target: "
              f"{size / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s")  # fmt: skip
        results = [measure(name, csv, Path(tmp)) for name in ("pandas.read_csv", "modelmill")]
        items = (Path(tmp) / "data" / "items.parquet").stat().st_size
    print(f"\n  {'side':18} {'seconds':>8} {'peak MiB':>9}")
    for r in results:
        print(f"  {r['side']:18} {r['seconds']:8.1f} {r['peak_bytes'] / 2**20:9.0f}")
    pandas, ours = results
    time_ratio, memory_ratio = ours["seconds"] / pandas["seconds"], ours["peak_bytes"] / pandas["peak_bytes"]
    print(
        f"  ours / pandas: time {time_ratio:.2f}x, memory {memory_ratio:.2f}x; "
        f"items.parquet {items / 2**20:.0f} MiB"
    )
    print(
        f"{'PASS' if ours['seconds'] <= 60 else 'MISS'} import time {ours['seconds']:.1f} s (target <= 60 s)"
    )
    gib = ours["peak_bytes"] / 2**30
    print(f"{'PASS' if gib <= 2 else 'MISS'} import peak memory {gib:.2f} GiB (target <= 2 GiB)")


if __name__ == "__main__":
    main()
