"""Simulated Label Studio: tasks in, exports out (JSON, JSON-MIN, CSV), as Label Studio writes them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

STAMP = "2026-11-2{day}T10:{minute:02d}:00.000000Z"


def annotation(
    ann_id,
    annotator,
    label,
    *,
    cancelled=False,
    ground_truth=False,
    review=None,
    minute=0,
    day=0,
    as_object=False,
    from_name="label",
    kind="choices",
    task=None,
):
    """One annotation object; review True/False adds an accepted/rejected review."""
    value = {kind: [label] if not isinstance(label, list) else label}
    result = (
        []
        if label is None
        else [
            {
                "id": f"r{ann_id}",
                "from_name": from_name,
                "to_name": "image",
                "type": kind,
                "origin": "manual",
                "value": value,
            }
        ]
    )
    ann = {
        "id": ann_id,
        "completed_by": {"id": annotator, "email": f"a{annotator}@example.com"} if as_object else annotator,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": ground_truth,
        "created_at": STAMP.format(day=day, minute=minute),
        "updated_at": STAMP.format(day=day, minute=minute),
        "lead_time": 3.2,
        "prediction": {},
        "result_count": len(result),
        "task": task,
        "project": 1,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_action": None,
        "unique_id": f"u{ann_id}",
    }
    if review is not None:
        ann["reviews"] = [
            {
                "id": ann_id * 10,
                "accepted": review,
                "created_by": 99,
                "created_at": STAMP.format(day=day + 1, minute=minute),
            }
        ]
    return ann


def task(task_id, item_id, annotations=(), *, predictions=(), drafts=(), image="data:image/png;base64,AA=="):
    for ann in annotations:
        ann["task"] = task_id
    return {
        "id": task_id,
        "data": {"item_id": item_id, "image": image},
        "annotations": list(annotations),
        "predictions": [
            {
                "model_version": "champion-v1",
                "score": 0.5,
                "result": [
                    {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [p]}}
                ],
            }
            for p in predictions
        ],
        "drafts": [
            {
                "id": 1000 + task_id,
                "result": [
                    {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [d]}}
                ],
            }
            for d in drafts
        ],
        "meta": {},
        "created_at": STAMP.format(day=0, minute=0),
        "updated_at": STAMP.format(day=0, minute=0),
        "inner_id": task_id,
        "total_annotations": len(annotations),
        "cancelled_annotations": 0,
        "total_predictions": len(predictions),
        "comment_count": 0,
        "project": 1,
        "updated_by": None,
        "file_upload": "tasks.json",
    }


def simulate(item_ids, truth, classes, accuracies, seed=0, start_id=1):
    """Tasks where annotator a labels each item correctly with probability accuracies[a]."""
    rng = np.random.default_rng(seed)
    tasks, ann_id = [], start_id
    for t, (item_id, label) in enumerate(zip(item_ids, truth, strict=True)):
        anns = []
        for annotator, accuracy in accuracies.items():
            given = label if rng.random() < accuracy else classes[int(rng.integers(len(classes)))]
            anns.append(annotation(ann_id, annotator, given, minute=t % 60))
            ann_id += 1
        tasks.append(task(start_id + t, item_id, anns))
    return tasks


def to_json_min(tasks, from_name="label"):
    rows = []
    for t in tasks:
        for ann in t["annotations"]:
            if ann["was_cancelled"]:
                continue
            choices = [c for r in ann["result"] for c in r["value"].get("choices", [])]
            row = dict(
                t["data"],
                id=t["id"],
                annotator=f"a{_id(ann['completed_by'])}@example.com",
                annotation_id=ann["id"],
                created_at=ann["created_at"],
                updated_at=ann["updated_at"],
                lead_time=ann["lead_time"],
            )
            row[from_name] = choices[0] if len(choices) == 1 else {"choices": choices}
            rows.append(row)
    return rows


def write_json(path, payload) -> Path:
    path = Path(path)
    path.write_text(json.dumps(payload))
    return path


def write_csv(path, rows) -> Path:
    path = Path(path)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})
    return path


def _id(completed_by):
    return completed_by["id"] if isinstance(completed_by, dict) else completed_by


def tiny_dataset(data_dir, n_items=30, n_labeled=10):
    """A 3-class 4x4 dataset: items it0000.., the first n_labeled labeled by a bootstrap source."""
    import pandas as pd

    from modelmill.data import Dataset, DatasetSchema, write_dataset

    schema = DatasetSchema(
        name="tiny", classes=("cat", "dog", "owl"), image_shape=(4, 4), pixel_range=(0.0, 16.0)
    )
    rng = np.random.default_rng(0)
    ids = [f"it{i:04d}" for i in range(n_items)]
    items = pd.DataFrame(
        rng.integers(0, 17, size=(n_items, 16)).astype(np.uint8), columns=schema.feature_columns
    )
    items.insert(0, "item_id", ids)
    labels = pd.DataFrame(
        {
            "item_id": ids[:n_labeled],
            "label": [schema.classes[i % 3] for i in range(n_labeled)],
            "source": "bootstrap",
        }
    )
    write_dataset(data_dir, Dataset(schema, items, labels))
    return schema, ids


def tree_digest(folder) -> dict[str, str]:
    """sha256 of every file under folder (relative path -> digest), to prove nothing changed."""
    import hashlib

    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
