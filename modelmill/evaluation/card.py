"""The model card of a registered version: JSON facts and Markdown in the Hugging Face layout (YAML
front matter with a `model-index` block), from the project's own template (no download)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelmill.atomic import atomic_write_bytes

CARD_MD, CARD_JSON = "README.md", "model_card.json"
_METRIC_NAMES = {
    "accuracy": "Test accuracy",
    "macro_f1": "Test macro F1",
    "macro_precision": "Test macro precision",
    "macro_recall": "Test macro recall",
}


@dataclass
class CardFacts:
    """What a card says; every section is JSON-able (figures as the evaluation produced them)."""

    model_name: str
    version: str
    task: str  # e.g. image-classification
    dataset: dict[str, Any]  # name, version, n, class_balance
    intended_use: str
    training: dict[str, Any]
    intervals: dict[str, dict[str, float]]  # metric -> point/low/high/level
    per_class: dict[str, dict[str, float]]
    calibration: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, Any] = field(default_factory=dict)
    explanations: dict[str, Any] = field(default_factory=dict)
    compression: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # figure name -> path on the run

    def model_index(self) -> list[dict[str, Any]]:
        metrics = [
            {"type": m, "name": _METRIC_NAMES.get(m, m), "value": round(iv["point"], 6), "verified": False}
            for m, iv in self.intervals.items()
        ]
        dataset = {
            "name": self.dataset.get("name", ""),
            "type": self.dataset.get("name", ""),
            "split": "test",
            "revision": self.dataset.get("version", ""),
        }
        task = {"type": self.task, "name": self.task.replace("-", " ").title()}
        return [
            {"name": self.model_name, "results": [{"task": task, "dataset": dataset, "metrics": metrics}]}
        ]

    def failed_checks(self) -> list[str]:
        parts = (self.robustness, self.explanations)
        return [c["name"] for part in parts for c in part.get("checks", []) if not c["passed"]]

    def limitations(self) -> list[str]:
        """Where this version fails, from its own figures."""
        out = []
        if self.per_class:
            worst = min(self.per_class, key=lambda c: self.per_class[c]["f1"])
            out.append(f"weakest class: {worst} (F1 {self.per_class[worst]['f1']:.3f})")
        acc = self.intervals.get("accuracy")
        if acc:
            out.append(
                f"test accuracy is known to +-{(acc['high'] - acc['low']) / 2:.3f} "
                f"({acc['level']:.0%} bootstrap interval on {self.dataset.get('n_test', '?')} items)"
            )
        if self.robustness.get("strongest") is not None:
            out.append(f"accuracy under the strongest attack configured: {self.robustness['strongest']:.3f}")
        for part in ("robustness", "explanations"):
            for check in getattr(self, part).get("checks", []):
                if not check["passed"]:
                    out.append(f"sanity check failed: {check['name']} ({check['detail']})")
        out.append("trained and tested on one data version; inputs unlike it are out of scope")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "model-index": self.model_index(),
            "intended_use": self.intended_use,
            "dataset": self.dataset,
            "training": self.training,
            "metrics": self.intervals,
            "per_class": self.per_class,
            "calibration": self.calibration,
            "robustness": self.robustness,
            "explanations": self.explanations,
            "compression": self.compression,
            "lineage": self.lineage,
            "limitations": self.limitations(),
            "artifacts": self.artifacts,
        }


def card_markdown(facts: CardFacts) -> str:
    front = {
        "library_name": "pytorch",
        "pipeline_tag": facts.task,
        "tags": ["modelmill", facts.task],
        "datasets": [facts.dataset.get("name", "")],
        "metrics": list(facts.intervals),
        "model-index": facts.model_index(),
    }
    sections = [
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---",
        f"# {facts.model_name} version {facts.version}",
        f"## Intended use\n\n{facts.intended_use}",
        _data_section(facts),
        "## Training configuration\n\n" + _kv_table(facts.training),
        _metrics_section(facts),
        _per_class_section(facts),
        "## Calibration\n\n" + _kv_table(facts.calibration),
        _checks_section("Robustness", facts.robustness),
        _checks_section("Explanations", facts.explanations),
        "## Compression variants\n\n" + (_kv_table(facts.compression) if facts.compression else "none"),
        "## Lineage\n\n" + _kv_table(facts.lineage),
        "## Limitations\n\n" + "\n".join(f"- {line}" for line in facts.limitations()),
    ]
    if facts.artifacts:
        sections.append("## Figures (artifacts of the run)\n\n" + _kv_table(facts.artifacts))
    return "\n\n".join(sections) + "\n"


def write_card(facts: CardFacts, folder: str | Path) -> tuple[Path, Path]:
    """README.md and model_card.json in folder, each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / CARD_MD, card_markdown(facts).encode())
    atomic_write_bytes(folder / CARD_JSON, json.dumps(facts.as_dict(), indent=2, default=str).encode())
    return folder / CARD_MD, folder / CARD_JSON


def _kv_table(values: dict[str, Any]) -> str:
    if not values:
        return "not measured"
    rows = "\n".join(f"| {k} | {_cell(v)} |" for k, v in values.items())
    return f"| key | value |\n| --- | --- |\n{rows}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value, default=str)}`".replace("|", "\\|")
    return str(value).replace("|", "\\|")


def _data_section(facts: CardFacts) -> str:
    balance = facts.dataset.get("class_balance", {})
    rows = "\n".join(f"| {cls} | {count} |" for cls, count in balance.items())
    head = f"data version `{facts.dataset.get('version', '?')}` ({facts.dataset.get('name', '?')})"
    return f"## Data\n\n{head}\n\n| class | labeled items |\n| --- | --- |\n{rows}"


def _metrics_section(facts: CardFacts) -> str:
    rows = "\n".join(
        f"| {m} | {iv['point']:.4f} | [{iv['low']:.4f}, {iv['high']:.4f}] |"
        for m, iv in facts.intervals.items()
    )
    level = next(iter(facts.intervals.values()), {}).get("level", 0.95)
    return (
        f"## Test metrics\n\n| metric | value | {level:.0%} bootstrap interval |\n| --- | --- | --- |\n{rows}"
    )


def _per_class_section(facts: CardFacts) -> str:
    rows = "\n".join(
        f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
        for c, r in facts.per_class.items()
    )
    head = "| class | precision | recall | F1 | support |\n| --- | --- | --- | --- | --- |"
    return f"## Per class\n\n{head}\n{rows}"


def _checks_section(title: str, part: dict[str, Any]) -> str:
    if not part:
        return f"## {title}\n\nnot measured"
    figures = {k: v for k, v in part.items() if k not in ("checks", "column_importance")}
    checks = "\n".join(
        f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |"
        for c in part.get("checks", [])
    )
    head = "| sanity check | result | figure |\n| --- | --- | --- |"
    text = f"## {title}\n\n{_kv_table(figures)}\n\n{head}\n{checks}"
    if importance := part.get("column_importance"):
        text += "\n\n" + _importance_table(importance)
    return text


def _importance_table(importance: dict[str, Any], top: int = 15) -> str:
    """Columns ranked by the accuracy they cost when permuted, beside their mean |IG|."""
    drop, ig = importance["permutation_accuracy_drop"], importance["attribution"]
    rows = "\n".join(f"| {c} | {drop[c] * 100:.2f} | {ig[c]:.4g} |" for c in importance["ranked"][:top])
    head = "| column | accuracy drop when permuted (points) | mean abs IG |\n| --- | --- | --- |"
    return f"Column importance ({importance['permutation_repeats']} permutations each):\n\n{head}\n{rows}"


# MLflow's SQL schema stores a model version's description as VARCHAR(5000): PostgreSQL and MySQL
# refuse a longer one (sqlite does not check), so the card is cut to whole sections below that
DESCRIPTION_LIMIT = 5000


def version_description(markdown: str, full_card: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """The card as a model version's description: whole if it fits in `limit` characters, else
    without its largest sections (named, with `full_card`, where the whole card is) until it fits."""
    if len(markdown) <= limit:
        return markdown
    head, *sections = markdown.rstrip("\n").split("\n\n## ")
    cut: list[str] = []

    def text() -> str:
        note = f"*Cut to fit MLflow's description limit: {', '.join(cut)}; the whole card: `{full_card}`.*"
        return "\n\n## ".join([head, *sections]) + f"\n\n{note}\n"

    while sections and len(text()) > limit:
        largest = max(sections, key=len)
        sections.remove(largest)
        cut.append(largest.split("\n", 1)[0])
    return text() if len(text()) <= limit else text()[: limit - 1] + "\n"
