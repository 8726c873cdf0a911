"""Benchmark: the text kind on Rotten Tomatoes, TF-IDF + LogisticRegression beside the frozen and
the fine-tuned MiniLM encoder, on the same hash split, in one run; then the fine-tuned model's
dynamic int8 and a distilled 2-layer student.

    python bench/text.py                       # the small file (4,863 snippets), 2 fine-tune epochs
    python bench/text.py --size full --finetune-epochs 1

Prints macro-F1 per model, training throughput (texts/s), the compression table (size, latency at
batch 1 and 256, ratios) and the issue's targets as PASS/MISS lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from modelmill.config import load_settings  # noqa: E402
from modelmill.data import fit_splits  # noqa: E402
from modelmill.data.rotten_tomatoes import build  # noqa: E402
from modelmill.encoder import MINILM, TextClassifier, load_pretrained  # noqa: E402
from modelmill.evaluation.metrics import evaluate_model  # noqa: E402
from modelmill.split import split_frame  # noqa: E402
from modelmill.text_training import train_text  # noqa: E402


def tfidf_baseline(parts, column: str, classes: list[str]) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(parts["train"][column])
    classifier = LogisticRegression(max_iter=2000, C=4.0).fit(x_train, parts["train"]["label"])
    predicted = classifier.predict(vectorizer.transform(parts["test"][column]))
    return float(f1_score(parts["test"]["label"], predicted, average="macro", labels=classes))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    settings = load_settings(None, {"model.text.finetune_epochs": args.finetune_epochs})
    dataset = build(args.size)
    if args.limit:  # a smoke run of the script on the first texts
        dataset.items, dataset.labels = dataset.items.head(args.limit), dataset.labels.head(args.limit)
    schema, classes = dataset.schema, list(dataset.schema.classes)
    parts = split_frame(dataset.labeled(), settings.split)
    print(
        f"{args.size} file: {len(dataset.items)} snippets; "
        + ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    )
    results: dict[str, dict] = {
        "tfidf_logreg": {"macro_f1": tfidf_baseline(parts, schema.text_column, classes)}
    }
    preprocessor, xy = fit_splits(parts, schema)
    print(f"tokens per text: {preprocessor.max_length} (95th percentile of train, rounded up to 8)")
    trained = {}
    for mode in args.modes:
        model = load_pretrained(TextClassifier(MINILM, len(classes), settings.model.text.head_hidden))
        text_cfg = settings.model.text.model_copy(update={"mode": mode})
        with tempfile.TemporaryDirectory() as cache:
            tick = time.perf_counter()
            result = train_text(model, xy["train"], xy["val"], settings.train, text_cfg, cache_dir=cache)
            seconds = time.perf_counter() - tick
        report = evaluate_model(result.model, *xy["test"], classes)
        rate = len(xy["train"][1]) * (len(result.history) if mode == "finetune" else 1) / seconds
        results[mode] = {"macro_f1": report.macro_f1, "seconds": seconds, "texts_per_second": rate,
                         "epochs": len(result.history), "best_epoch": result.best_epoch}  # fmt: skip
        trained[mode] = result.model
        print(
            f"{mode}: macro-F1 {report.macro_f1:.4f}, {seconds:.0f}s, {rate:.1f} texts/s (train)", flush=True
        )
    print_models(results)
    if "finetune" in trained and not args.no_compression:
        compression(trained["finetune"], xy, classes, settings, args, results)
    Path(args.out).write_text(json.dumps(results, indent=2))


def compression(teacher, xy, classes, settings, args, results) -> None:
    """The compress stage's methods for text (modelmill.compression): dynamic int8 and one distilled
    student per --student-layers, measured side by side (latency interleaved) on the test split."""
    from modelmill.compression import architecture_of, methods
    from modelmill.compression.measure import compare_to_baseline, interleaved_latency_ms, measure

    cfg = settings.compress.model_copy(
        update={"latency_batch_sizes": [1, 256], "serving_batch_size": 256, "threads": args.threads,
                "latency_repeats": args.repeats, "distill_epochs": args.distill_epochs,
                "temperature": args.temperature}
    )  # fmt: skip
    arch = architecture_of(teacher)
    variants = [methods.baseline(teacher, arch), methods.dynamic_int8(teacher, arch)]
    for layers in args.student_layers:
        tick, student_cfg = time.perf_counter(), cfg.model_copy(update={"student_layers": layers})
        student = methods.distilled(teacher, arch, xy["train"], xy["val"], student_cfg, settings.train,
                                    settings.model.text)  # fmt: skip
        student.name = f"distilled_{layers}_layers"
        variants.append(student)
        print(f"{student.name}: {time.perf_counter() - tick:.0f}s, {student.settings}", flush=True)
    latencies = interleaved_latency_ms([v.module for v in variants], xy["test"][0], cfg)
    rows = [measure(v, xy["test"], classes, cfg, lat) for v, lat in zip(variants, latencies, strict=True)]
    compare_to_baseline(rows, rows[0])
    results["compression"] = [r.flat() for r in rows]
    print("\n| variant | macro-F1 | F1 drop (pts) | size MB | smaller | ms b1 | ms b256 | speed-up b256 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        drop = 100 * (rows[0].macro_f1 - r.macro_f1)
        cells = [r.name, f"{r.macro_f1:.4f}", f"{drop:.2f}", f"{r.size_bytes / 1e6:.1f}",
                 f"{1 / r.size_ratio:.2f}x", f"{r.latency_ms[1]:.1f}", f"{r.latency_ms[256]:.0f}",
                 f"{r.speedup[256]:.2f}x"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    for r in rows[2:]:
        drop = 100 * (rows[0].macro_f1 - r.macro_f1)
        verdict = "PASS" if r.speedup[256] >= 5 and drop <= 2 else "MISS"
        print(f"{verdict}: {r.name} {r.speedup[256]:.1f}x faster at batch 256 (>= 5x) for "
              f"{drop:.2f} points of macro-F1 (<= 2)")  # fmt: skip


def print_models(results: dict) -> None:
    base = results["tfidf_logreg"]["macro_f1"]
    print(f"\nTF-IDF + LogisticRegression: macro-F1 {base:.4f}")
    if "finetune" in results:
        f1 = results["finetune"]["macro_f1"]
        verdict = "PASS" if f1 >= base + 0.03 else "MISS"
        gain = 100 * (f1 - base)
        print(f"{verdict}: finetune {f1:.4f} vs baseline {base:.4f} ({gain:+.1f} points; target >= +3)")
    if "frozen" in results:
        f1 = results["frozen"]["macro_f1"]
        print(f"{'PASS' if f1 > base else 'MISS'}: frozen {f1:.4f} vs baseline {base:.4f} (target: above)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=["small", "full"], default="small")
    parser.add_argument("--modes", nargs="+", default=["frozen", "finetune"])
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--distill-epochs", type=int, default=2)
    parser.add_argument("--student-layers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--temperature", type=float, default=4.0, help="distillation temperature")
    parser.add_argument("--repeats", type=int, default=5, help="latency rounds per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N snippets (a smoke run)")
    parser.add_argument("--out", default="bench-text.json")
    return parser.parse_args()


if __name__ == "__main__":
    main()
