"""Benchmark: compression variants of the default champion vs its float model, in one run.

    python bench/compression.py                     # trains a champion with params.yaml defaults
    python bench/compression.py --champion model/  # a saved model folder (modelmill.modelfile) instead
    python bench/compression.py --sweep             # also: distillation students/T/alpha tried
    python bench/compression.py --sources digits breast_cancer penguins rotten_tomatoes [--epochs N]
                                                    # training vs compression time per built-in source,
                                                    # the time budget on (--no-budget: off; texts:
                                                    # --text-limit 1200, --text-epochs 1)

Prints, per variant: stored size ratio, latency ratio (float / variant; >1 = faster) at each
measured batch size, accuracy delta in points — and the issue's targets as PASS/MISS lines.
Sizes are the stored bytes (safetensors package, zlib); `dense` is plain safetensors.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")  # torch 2.13 deprecation notice

from modelmill.compression import CompressionReport, compress, methods  # noqa: E402
from modelmill.compression.measure import compare_to_baseline, measure  # noqa: E402
from modelmill.config import load_settings  # noqa: E402
from modelmill.data import Dataset, source_module, to_tensors  # noqa: E402
from modelmill.models import build_model  # noqa: E402
from modelmill.split import split_frame  # noqa: E402
from modelmill.training import train  # noqa: E402

SWEEP = {"width_hidden": [(8, 32), (12, 64), (16, 64)], "temperature": [2.0, 4.0], "alpha": [0.5, 0.9]}


def main() -> None:
    args = parse_args()
    if args.sources:
        compare_sources(args)
        return
    config = Path(args.config)
    settings = load_settings(
        config if config.exists() else None,
        {
            "compress.threads": args.threads,
            "compress.latency_repeats": args.repeats,
            "train.num_threads": args.train_threads,
        },
    )
    module = source_module(settings.data.source)
    dataset = Dataset(module.SCHEMA, *module.load())
    splits = {
        k: to_tensors(v, dataset.schema) for k, v in split_frame(dataset.labeled(), settings.split).items()
    }
    classes = list(dataset.schema.classes)
    champion = load_or_train(args.champion, dataset, splits, settings)
    tick = time.perf_counter()
    report = compress(champion, splits, classes, settings.compress, settings.train)
    print(
        f"\ncompress: {len(report.rows)} variants built and measured in {time.perf_counter() - tick:.1f} s "
        f"(latency: median of {settings.compress.latency_repeats} runs, "
        f"{settings.compress.threads} thread(s), "
        f"test split of {len(splits['test'][1])} items)\n"
    )
    print_table(report.rows, settings.compress.latency_batch_sizes)
    print("\n" + report.selection.summary())
    if report.onnx:
        print(
            f"ONNX of `{report.selection.chosen}`: {report.onnx.size_bytes} bytes, max |diff| "
            f"{report.onnx.max_abs_diff:.3g} vs torch, label agreement {report.onnx.label_agreement:.4f}"
        )
    elif report.onnx_error:
        print(f"ONNX: {report.onnx_error}")
    print_targets(report)
    if args.sweep:
        sweep(champion, dataset, splits, settings, report.row("float"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--champion", help="model folder of a ConvNet (modelmill.modelfile; default: train one)"
    )
    parser.add_argument("--config", default="params.yaml")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    parser.add_argument(
        "--train-threads",
        type=int,
        default=1,
        help="torch threads while training (1 is fastest on a shared 2-core box)",
    )
    parser.add_argument("--repeats", type=int, help="timed runs per variant and batch size (median)")
    parser.add_argument("--sweep", action="store_true", help="try distillation students/T/alpha")
    parser.add_argument("--sources", nargs="+", help="built-in sources: training vs compression time")
    parser.add_argument("--text-limit", type=int, default=1200, help="--sources: texts of rotten_tomatoes")
    parser.add_argument(
        "--text-epochs", type=int, default=1, help="--sources: model.text.finetune_epochs (params.yaml: 2)"
    )
    parser.add_argument("--verbose", action="store_true", help="--sources: each source's variant table")
    parser.add_argument("--epochs", type=int, help="--sources: train.epochs (e.g. fewer for fashion_mnist)")
    parser.add_argument("--no-budget", action="store_true", help="--sources: compress.max_train_ratio null")
    return parser.parse_args()


def load_or_train(path, dataset, splits, settings):
    if path:
        from modelmill import modelfile

        return modelfile.load(path).module.cpu().eval()  # a model folder (safetensors + JSON), verified
    tick = time.perf_counter()
    model = build_model(dataset.schema.image_shape, len(dataset.schema.classes), settings.model)
    result = train(model, splits["train"], splits["val"], settings.train)
    print(
        f"champion: trained with the default config in {time.perf_counter() - tick:.1f} s "
        f"(best epoch {result.best_epoch}, val accuracy {result.best.val_accuracy:.4f})"
    )
    return result.model


def print_table(rows, batch_sizes) -> None:
    head = (
        f"{'variant':24s} {'acc':>7s} {'d_acc':>7s} {'d_f1':>7s} {'size B':>9s} {'size x':>7s} "
        f"{'dense B':>9s} {'params':>7s} {'nonzero':>7s} "
        + " ".join(f"{f'lat b{b} ms':>11s} {f'speed b{b}':>9s}" for b in batch_sizes)
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        timing = " ".join(f"{r.latency_ms[b]:11.3f} {r.speedup[b]:8.2f}x" for b in batch_sizes)
        f1_delta = (r.macro_f1 - rows[0].macro_f1) * 100  # macro-F1 vs the float model, in points
        print(
            f"{r.name:24s} {r.accuracy:7.4f} {r.accuracy_delta_points:+7.2f} {f1_delta:+7.2f} "
            f"{r.size_bytes:9d} {r.size_ratio:6.3f}x {r.dense_size_bytes:9d} {r.parameters:7d} "
            f"{r.nonzero_parameters:7d} {timing}"
        )


def print_targets(report) -> None:
    def line(ok: bool, text: str) -> None:
        print(f"  [{'PASS' if ok else 'MISS'}] {text}")

    print("\ntargets:")
    for name in ("static_int8", "dynamic_int8"):
        if name in report.variants:
            r = report.row(name)
            line(r.size_ratio <= 0.30, f"{name} size <= 0.30x: {r.size_ratio:.3f}x")
            if 256 in r.speedup:
                line(r.speedup[256] >= 1.5, f"{name} >= 1.5x faster at batch 256: {r.speedup[256]:.2f}x")
            line(
                r.accuracy_delta_points >= -0.5,
                f"{name} accuracy drop <= 0.5 point: {r.accuracy_delta_points:+.2f}",
            )
    for name in ("distilled", "distilled_static_int8"):
        if name in report.variants:
            r = report.row(name)
            line(
                r.size_ratio <= 0.25 and r.accuracy_delta_points >= -1.0,
                f"{name} >= 4x smaller ({1 / r.size_ratio:.1f}x) "
                f"within 1 point ({r.accuracy_delta_points:+.2f})",
            )


def sweep(champion, dataset, splits, settings, baseline) -> None:
    """Distillation students tried: width/hidden x temperature x alpha (and the CE-only student)."""
    from modelmill.compression import architecture_of

    arch, cfg = architecture_of(champion), settings.compress
    classes = list(dataset.schema.classes)
    print("\ndistillation sweep (student trained with the same train config; alpha=0 is plain CE):")
    print(
        f"{'width':>5s} {'hidden':>6s} {'T':>4s} {'alpha':>5s} {'params':>7s} {'size x':>7s} "
        f"{'acc':>7s} {'d_acc':>7s}"
    )
    grid = itertools.product(SWEEP["width_hidden"], SWEEP["temperature"], SWEEP["alpha"])
    plain = [((w, h), 1.0, 0.0) for w, h in SWEEP["width_hidden"]]
    for (width, hidden), temperature, alpha in [*plain, *grid]:
        trial = cfg.model_copy(
            update={
                "student_width": width,
                "student_hidden": hidden,
                "temperature": temperature,
                "alpha": alpha,
            }
        )
        student = methods.distilled(champion, arch, splits["train"], splits["val"], trial, settings.train)
        row = measure(student, splits["test"], classes, trial)
        compare_to_baseline([row], baseline)
        print(
            f"{width:5d} {hidden:6d} {temperature:4g} {alpha:5g} {row.parameters:7d} {row.size_ratio:6.3f}x "
            f"{row.accuracy:7.4f} {row.accuracy_delta_points:+7.2f}",
            flush=True,
        )


def compare_sources(args: argparse.Namespace) -> None:
    """Per built-in source, as `modelmill run` does it: the kind's preprocessor fitted on train, its
    default model trained (early stopping on val), then the compress stage's core on the same splits
    with its time budget (compress.max_train_ratio x the training seconds, --no-budget: none); wall
    times of both, their ratio (issue 11: compression <= 0.5x training), each variant's accuracy
    delta and what the budget skipped."""
    print(f"{'source':16s} {'items':>6s} {'train s':>8s} {'compress s':>10s} {'ratio':>6s}  selected")
    met = {}
    for source in args.sources:
        report, train_seconds, seconds, items = compress_source(source, args)
        ratio = seconds / train_seconds
        met[source] = ratio <= 0.5
        print(
            f"{source:16s} {items:6d} {train_seconds:8.1f} {seconds:10.1f} {ratio:5.2f}x  "
            f"{report.selection.chosen or 'none'}  [{'MET' if met[source] else 'MISS'} <= 0.5x]",
            flush=True,
        )
        for row in report.rows[1:]:
            delta, size = row.accuracy_delta_points, row.size_ratio
            print(f"{'':16s} {row.name:22s} {delta:+6.2f} accuracy points  {size:5.3f}x size")
        for method, why in report.skipped.items():
            print(f"{'':16s} {method:22s} {why}")
        for name, note in report.notes.items():
            print(f"{'':16s} {name:22s} {note}")
        if args.verbose:
            steps = ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items())
            print(f"{'':16s} seconds: {steps}")
            print_table(report.rows, report.rows[0].latency_ms.keys())
            print()
    print(f"\ntarget (compression <= 0.5x training): {sum(met.values())} of {len(met)} sources MET")


def compress_source(source: str, args: argparse.Namespace) -> tuple[CompressionReport, float, float, int]:
    """(report, training seconds, compression seconds, items) of one built-in source."""
    from modelmill.compression import TimeBudget
    from modelmill.data import bootstrap, fit_splits, load_dataset
    from modelmill.kinds import default_model
    from modelmill.text_training import train_text

    overrides = {"train.num_threads": args.train_threads, "compress.threads": args.threads,
                 "model.text.finetune_epochs": args.text_epochs, "data.source": source}  # fmt: skip
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    if args.no_budget:
        overrides["compress.max_train_ratio"] = None
    settings = load_settings(None, overrides)
    with tempfile.TemporaryDirectory() as folder:
        dataset = load_dataset(bootstrap(Path(folder, "data"), source))
    labeled = dataset.labeled()
    if dataset.schema.kind == "text":  # a short config: the first texts, --text-epochs fine-tune epochs
        labeled = labeled.head(args.text_limit)
    preprocessor, xy = fit_splits(split_frame(labeled, settings.split), dataset.schema)
    model = default_model(dataset.schema, settings.model, preprocessor)
    tick = time.perf_counter()
    if dataset.schema.kind == "text":
        result = train_text(model, xy["train"], xy["val"], settings.train, settings.model.text)
    else:
        result = train(model, xy["train"], xy["val"], settings.train)
    train_seconds, tick = time.perf_counter() - tick, time.perf_counter()
    cfg = settings.compress
    budget = TimeBudget.from_training(cfg.max_train_ratio, train_seconds, len(result.history))
    classes = list(dataset.schema.classes)
    report = compress(result.model, xy, classes, cfg, settings.train, text=settings.model.text, budget=budget)
    return report, train_seconds, time.perf_counter() - tick, len(labeled)


if __name__ == "__main__":
    main()
