"""The compression table for humans and trackers: a DataFrame, markdown, a size-vs-accuracy plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from modelmill.compression.measure import VariantRow

COLUMNS = [
    "name",
    "method",
    "accuracy",
    "accuracy_delta_points",
    "macro_f1",
    "size_bytes",
    "size_ratio",
    "dense_size_bytes",
    "parameters",
    "nonzero_parameters",
]


def table(rows: list[VariantRow]) -> pd.DataFrame:
    frame = pd.DataFrame([row.flat() for row in rows])
    timing = sorted(c for c in frame.columns if c.startswith(("latency_ms_b", "speedup_b")))
    return frame[COLUMNS + timing + ["settings"]]


def markdown(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: f"{v:.4g}")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def plot_size_vs_accuracy(
    rows: list[VariantRow], path: str | Path, chosen: str | None = None, budget_points: float | None = None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for row in rows:
        marker, color = ("*", "tab:red") if row.name == chosen else ("o", "tab:blue")
        ax.scatter(row.size_bytes / 1024, row.accuracy * 100, marker=marker, color=color, s=70)
        ax.annotate(
            row.name,
            (row.size_bytes / 1024, row.accuracy * 100),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    baseline = next((r for r in rows if r.name == "float"), None)
    if baseline is not None and budget_points is not None:
        ax.axhline(
            baseline.accuracy * 100 - budget_points,
            ls="--",
            color="grey",
            label=f"budget: float - {budget_points:g} points",
        )
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("stored size (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("compression variants: size vs accuracy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
