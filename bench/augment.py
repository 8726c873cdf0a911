"""Benchmark: augmentation on digits, trained with and without it in one run (same seeds, split, model).

    python bench/augment.py                  # 3 seeds, rotation 20 / scale 0.1 / translate 0.05, p 0.5
    python bench/augment.py --salt holdout --first-seed 3   # another split and other seeds
    python bench/augment.py --seeds 1 --epochs 20

Both sides train with the same settings: up to 60 epochs with patience 10 (params.yaml has 30 and
5). A model that sees transformed images learns more slowly, and at patience 5 early stopping cut
the augmented runs short (12-30 epochs) before the extra data paid off. The augmentation defaults
were chosen on the default split; `--salt` and `--first-seed` check them on a split and seeds
that took no part in that choice.

Prints the robustness table (clean test accuracy beside rotated +-15 deg, scaled and noisy
copies of the test split) for both, averaged over the seeds, and the issue's targets as
PASS/MISS lines: rotated accuracy (mean of +15 and -15) at least 5 points higher with
augmentation, clean accuracy at most 0.5 points lower.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from modelmill.augment import augmenter_for, robustness_table  # noqa: E402
from modelmill.config import load_settings  # noqa: E402
from modelmill.data import Dataset, source_module, to_tensors  # noqa: E402
from modelmill.models import build_model  # noqa: E402
from modelmill.split import split_frame  # noqa: E402
from modelmill.training import seed_everything, train  # noqa: E402


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    module = source_module("digits")
    dataset = Dataset(module.SCHEMA, *module.load())
    overrides: dict[str, object] = {"train.epochs": args.epochs, "train.patience": args.patience}
    if args.salt is not None:
        overrides["split.salt"] = args.salt
    base = load_settings(None, overrides)
    xy = {k: to_tensors(v, dataset.schema) for k, v in split_frame(dataset.labeled(), base.split).items()}
    augmented = base.override(
        {
            "augment.enabled": True,
            "augment.image": {
                "rotation": args.rotation,
                "scale": args.scale,
                "translate": args.translate,
                "p": args.p,
            },
        }
    )
    tables: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, settings in (("without", base), ("with", augmented)):
            tick = time.perf_counter()
            cfg = settings.train.model_copy(update={"seed": seed})
            seed_everything(seed)  # the same initial weights with and without augmentation
            model = build_model(dataset.schema.image_shape, len(dataset.schema.classes), settings.model)
            augment = augmenter_for(settings.augment, "image", seed)
            result = train(model, xy["train"], xy["val"], cfg, augment=augment)
            tables[name].append(robustness_table(result.model, *xy["test"], "image"))
            print(
                f"  seed {seed} {name:<7}: {len(result.history)} epochs, {time.perf_counter() - tick:.0f} s",
                file=sys.stderr,
            )
    print_table({name: mean(rows) for name, rows in tables.items()}, args, len(xy["test"][1]))


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    table = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    table["rotated +-15"] = (table["rotated +15"] + table["rotated -15"]) / 2
    return table


def print_table(tables: dict[str, dict[str, float]], args: argparse.Namespace, n_test: int) -> None:
    without, with_ = tables["without"], tables["with"]
    print(
        f"\ndigits test split ({n_test} items, salt {args.salt or 'of params.yaml'}), {args.seeds} seed(s) "
        f"from {args.first_seed}; augmentation: rotation "
        f"{args.rotation}, scale {args.scale}, translate {args.translate}, p {args.p}; "
        f"up to {args.epochs} epochs, patience {args.patience}"
    )
    print(f"{'test copy':<14} {'without':>8} {'with':>8} {'points':>7}")
    for key in without:
        print(f"{key:<14} {without[key]:>8.4f} {with_[key]:>8.4f} {100 * (with_[key] - without[key]):>+7.2f}")
    rotated_gain = 100 * (with_["rotated +-15"] - without["rotated +-15"])
    clean_loss = 100 * (without["clean"] - with_["clean"])
    passed = "PASS" if rotated_gain >= 5 else "MISS"
    print(f"{passed} rotated +-15: {rotated_gain:+.2f} points (target >= +5)")
    print(f"{'PASS' if clean_loss <= 0.5 else 'MISS'} clean: {-clean_loss:+.2f} points (target >= -0.5)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--salt", default=None, help="split.salt: another hash split of digits")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--rotation", type=float, default=20.0, help="max degrees in training")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--translate", type=float, default=0.05)
    parser.add_argument("--p", type=float, default=0.5, help="share of training images transformed")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


if __name__ == "__main__":
    main()
