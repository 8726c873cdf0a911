"""Benchmark: is the drift check calibrated and powerful on digits? Both sides in one run.

    python bench/drift.py                 # 150 null resplits, 25 draws per shift, 500 items a side
    python bench/drift.py --null 100 --draws 20

A champion (small ConvNet, a few epochs) is trained on the train split. Null: two disjoint random
halves of one data version (the 1,797 digits), 500 items each. Shifts, applied to the current
side only: Gaussian pixel noise (std --noise), rotation by 15 degrees, a 30% class-prior shift
read as 30% of the prior mass moved (classes 0-4 at 16% each, 5-9 at 4%: total variation 0.3),
and a harder variant with no target: each prior 30% up or down (13% / 7%: total variation
0.15). Prints the false-positive rate and the power of the whole check (Benjamini-Hochberg over
all tests) and of each test, the seconds per check, and the issue's targets as PASS/MISS lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from modelmill.augment import noisy, rotated  # noqa: E402
from modelmill.config import load_settings  # noqa: E402
from modelmill.data import Dataset, source_module, to_tensors  # noqa: E402
from modelmill.drift import DriftSample, compare  # noqa: E402
from modelmill.models import build_model  # noqa: E402
from modelmill.split import split_frame  # noqa: E402
from modelmill.training import train  # noqa: E402


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    settings = load_settings(None, {"train.epochs": args.epochs, "model.width": 16, "model.hidden": 64})
    module = source_module("digits")
    dataset = Dataset(module.SCHEMA, *module.load())
    labeled = dataset.labeled()
    parts = split_frame(labeled, settings.split)
    xy = {k: to_tensors(v, dataset.schema) for k, v in parts.items()}
    classes = list(dataset.schema.classes)
    champion = train(
        build_model(dataset.schema.image_shape, len(classes), settings.model),
        xy["train"],
        xy["val"],
        settings.train,
    ).model
    x_all, y_all = to_tensors(labeled, dataset.schema)
    cfg = settings.drift.model_copy(update={"permutations": args.permutations})

    def check(draw: int, shift: str) -> object:
        prior = {"prior 30% TV": 0.6, "prior +-30%": 0.3}.get(shift, 0.0)
        ref_idx, cur_idx = draw_halves(y_all, args.items, draw, prior)
        cur_x = x_all[cur_idx]
        if shift == "noise":
            cur_x = noisy(cur_x, args.noise, seed=draw)
        elif shift == "rotation":
            cur_x = rotated(cur_x, 15.0)
        ref = DriftSample("ref", x_all[ref_idx], [classes[i] for i in y_all[ref_idx]])
        cur = DriftSample(shift, cur_x, [classes[i] for i in y_all[cur_idx]])
        return compare(champion, ref, cur, classes, cfg.model_copy(update={"seed": draw}))

    rows = [("null (resplit)", run("null", args.null, check))]
    rows += [
        (name, run(name, args.draws, check)) for name in ("noise", "rotation", "prior 30% TV", "prior +-30%")
    ]
    print_table(rows, args)


def draw_halves(
    y: torch.Tensor, items: int, draw: int, shift: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint reference and current indices. With `shift`, the current side holds exact class
    counts: classes 0-4 at (1 + shift) / 10 of the items each, 5-9 at (1 - shift) / 10 (the
    total-variation distance from uniform priors is shift / 2)."""
    generator = torch.Generator().manual_seed(draw)
    order = torch.randperm(len(y), generator=generator)
    ref, rest = order[:items], order[items:]
    if not shift:
        return ref, rest[:items]
    picked = []
    for label in range(10):
        share = (1 + shift if label < 5 else 1 - shift) / 10
        picked.append(rest[y[rest] == label][: round(items * share)])
    return ref, torch.cat(picked)


def run(name: str, draws: int, check) -> dict:
    detected, per_test, seconds = 0, {}, []
    for draw in range(draws):
        report = check(draw, name)
        detected += report.drifted
        seconds.append(report.seconds)
        for test in report.tests:
            per_test[test.name] = per_test.get(test.name, 0) + (test.p_value <= report.alpha)
        if (draw + 1) % 25 == 0:
            print(f"  {name}: {draw + 1}/{draws}", file=sys.stderr)
    return {
        "rate": detected / draws,
        "draws": draws,
        "per_test": {k: v / draws for k, v in per_test.items()},
        "seconds": sorted(seconds)[len(seconds) // 2],
        "max_seconds": max(seconds),
    }


def print_table(rows: list[tuple[str, dict]], args: argparse.Namespace) -> None:
    tests = list(rows[0][1]["per_test"])
    print(f"\n{args.items} items a side, {args.permutations} permutations, noise std {args.noise}")
    print(f"{'scenario':<16} {'draws':>5} {'drift rate':>10} " + " ".join(f"{t:>12}" for t in tests))
    for name, row in rows:
        cells = " ".join(f"{row['per_test'].get(t, 0):>12.3f}" for t in tests)
        print(f"{name:<16} {row['draws']:>5} {row['rate']:>10.3f} {cells}")
    null = rows[0][1]
    slowest = max(r["max_seconds"] for _, r in rows)
    print("(per-test columns: share of draws with that test's own p <= alpha, before correction)")
    print(f"seconds per check: median {null['seconds']:.2f}, slowest {slowest:.2f}")
    print(f"{'PASS' if abs(null['rate'] - 0.05) <= 0.03 else 'MISS'} false-positive rate {null['rate']:.3f}")
    for name, row in rows[1:-1]:  # the last row (+-30% of each prior) is a harder variant, no target
        print(f"{'PASS' if row['rate'] >= 0.9 else 'MISS'} power {name} {row['rate']:.3f} (target >= 0.9)")
    print(f"{'PASS' if slowest <= 10 else 'MISS'} one check <= 10 s (slowest {slowest:.2f} s)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--null", type=int, default=150, help="null resplits")
    parser.add_argument("--draws", type=int, default=25, help="draws per shift")
    parser.add_argument("--items", type=int, default=500, help="items a side")
    parser.add_argument("--permutations", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.1, help="std of the pixel noise (pixels in [0, 1])")
    parser.add_argument("--epochs", type=int, default=10, help="champion training epochs")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


if __name__ == "__main__":
    main()
