"""Import of Label Studio exports into a data folder: round trip, idempotency, re-exports."""

import json

import numpy as np
import pandas as pd
import pytest

from modelmill.config import LabelsConfig
from modelmill.data import load_dataset
from modelmill.labels import (
    build_tasks,
    import_exports,
    labeling_config,
    load_ledger,
    select_uncertain,
)
from tests.support import labelstudio_sim as sim
from tests.support.labelstudio_sim import annotation as ann

CFG = LabelsConfig()


@pytest.fixture
def data(tmp_path):
    schema, ids = sim.tiny_dataset(tmp_path / "data")
    return tmp_path / "data", schema, ids


def _annotated(tasks):
    """Label Studio's side of the round trip: ids assigned, annotators vote (see expectations below)."""
    plan = [
        [ann(11, 1, "cat"), ann(12, 2, "cat", as_object=True), ann(13, 3, "cat")],  # unanimous
        [ann(21, 1, "dog"), ann(22, 2, "dog"), ann(23, 3, "owl")],  # 2 of 3
        [ann(31, 1, "cat"), ann(32, 2, "dog")],  # tie -> review
        [ann(41, 1, "owl"), ann(42, 2, "owl"), ann(43, 3, None, cancelled=True)],  # cancelled ignored
        [ann(51, 1, "cat", review=False), ann(52, 2, "dog"), ann(53, 3, "dog")],  # rejected ignored
        [ann(61, 1, "cat", ground_truth=True), ann(62, 2, "dog"), ann(63, 3, "dog")],  # ground truth wins
        [],  # prediction only
        [ann(81, 1, "owl", review=True), ann(82, 2, "cat"), ann(83, 3, "dog")],  # accepted review wins
    ]
    exported = []
    for task_id, (task, anns) in enumerate(zip(tasks, plan, strict=True), start=1):
        item = task["data"]["item_id"]
        exported.append(
            sim.task(task_id, item, anns, predictions=["cat"], drafts=["dog"] if not anns else ())
        )
    return exported


def test_round_trip_export_tasks_annotate_import(data, tmp_path):
    data_dir, schema, ids = data
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=len(ids))
    dataset = load_dataset(data_dir)
    labeled = set(dataset.labels["item_id"])
    chosen = select_uncertain(ids, proba, count=8, method="margin", exclude=labeled)
    tasks = build_tasks(chosen, dataset.items, proba, schema, CFG, model_version="digits-classifier/3")
    assert '<Choice value="owl"/>' in labeling_config(schema.classes, CFG)
    assert not labeled & {t["data"]["item_id"] for t in tasks}
    export = sim.write_json(tmp_path / "project-1-at-2026-11-23.json", _annotated(tasks))

    report = import_exports(data_dir, [export], CFG)

    items = [t["data"]["item_id"] for t in tasks]
    labels = pd.read_parquet(data_dir / "labels.parquet").set_index("item_id")
    expected = {
        items[0]: "cat",
        items[1]: "dog",
        items[3]: "owl",
        items[4]: "dog",
        items[5]: "cat",
        items[7]: "owl",
    }
    assert labels.loc[list(expected), "label"].to_dict() == expected
    assert items[2] not in labels.index and items[6] not in labels.index
    assert labels.loc[items[0], "source"].startswith("labelstudio:" + report.files[0]["sha256"][:12])
    assert list(report.review["item_id"]) == [items[2]]
    assert report.ignored == {"cancelled": 1, "rejected in review": 1}
    assert (report.tasks, report.used, report.predictions, report.drafts) == (8, 18, 8, 1)
    assert (report.labels_new, report.labels_changed) == (6, 0)
    assert report.metrics()["conflicts"] == 1
    assert report.resolution.kappa_kind == "fleiss"
    assert report.resolution.kappa == pytest.approx(_fleiss_of_used_votes(), abs=1e-6)
    assert (data_dir / "exports" / f"{report.files[0]['sha256']}.json").read_bytes() == export.read_bytes()


def _fleiss_of_used_votes():
    # items with >=2 used votes, counts over (cat, dog, owl), written out by hand from _annotated
    counts = np.array([[3, 0, 0], [0, 2, 1], [1, 1, 0], [0, 0, 2], [0, 2, 0], [1, 2, 0], [1, 1, 1]], float)
    n = counts.sum(1)
    p_i = ((counts**2).sum(1) - n) / (n * (n - 1))
    p_j = counts.sum(0) / counts.sum()
    return (p_i.mean() - (p_j**2).sum()) / (1 - (p_j**2).sum())


def test_importing_the_same_export_twice_changes_nothing(data, tmp_path):
    data_dir, schema, ids = data
    export = sim.write_json(
        tmp_path / "e.json", sim.simulate(ids[5:25], ["cat"] * 20, schema.classes, {1: 0.8, 2: 0.8})
    )
    first = import_exports(data_dir, [export], CFG)
    before = sim.tree_digest(data_dir)
    second = import_exports(data_dir, [export, export], CFG)
    assert first.changed and not second.changed
    assert sim.tree_digest(data_dir) == before
    assert second.repeated == 40 and second.labels_new == 0


def test_reexport_repeating_old_annotations_counts_each_once(data, tmp_path):
    data_dir, _, ids = data
    old = [sim.task(1, ids[20], [ann(1, 1, "cat"), ann(2, 2, "dog")])]
    again = [sim.task(1, ids[20], [ann(1, 1, "cat"), ann(2, 2, "dog"), ann(3, 3, "dog")])]
    import_exports(data_dir, [sim.write_json(tmp_path / "a.json", old)], CFG)
    report = import_exports(data_dir, [sim.write_json(tmp_path / "b.json", again)], CFG)
    assert report.repeated == 2
    assert len(load_ledger(data_dir)) == 3
    assert report.review.empty and report.labels_new == 1
    assert report.resolution.labeled.iloc[0]["agreement"] == pytest.approx(2 / 3, abs=1e-4)


def test_updated_annotation_later_updated_at_wins(data, tmp_path):
    data_dir, _, ids = data
    first = [sim.task(1, ids[21], [ann(7, 1, "cat", minute=1)])]
    updated = [sim.task(1, ids[21], [ann(7, 1, "owl", minute=9)])]
    stale = [sim.task(1, ids[21], [ann(7, 1, "dog", minute=5)])]
    for name, tasks in (("1.json", first), ("2.json", updated), ("3.json", stale)):
        report = import_exports(data_dir, [sim.write_json(tmp_path / name, tasks)], CFG)
    labels = pd.read_parquet(data_dir / "labels.parquet").set_index("item_id")
    assert labels.loc[ids[21], "label"] == "owl"
    assert report.superseded == 1 and report.labels_unchanged == 1


def test_rejection_in_a_later_export_retracts_the_vote(data, tmp_path):
    data_dir, _, ids = data
    first = [sim.task(1, ids[22], [ann(1, 1, "cat"), ann(2, 2, "dog"), ann(3, 3, "dog")])]
    reviewed = [sim.task(1, ids[22], [ann(1, 1, "cat"), ann(2, 2, "dog", review=False), ann(3, 3, "dog")])]
    import_exports(data_dir, [sim.write_json(tmp_path / "1.json", first)], CFG)
    report = import_exports(data_dir, [sim.write_json(tmp_path / "2.json", reviewed)], CFG)
    assert report.ignored["rejected in review"] == 1
    assert list(report.review["status"]) == ["tie"]  # cat:1, dog:1 -> the label stays, listed for review


def test_bootstrap_label_is_corrected_by_consensus(data, tmp_path):
    data_dir, _, ids = data  # it0000 is labeled 'cat' by the bootstrap source
    tasks = [sim.task(1, ids[0], [ann(1, 1, "owl"), ann(2, 2, "owl")])]
    report = import_exports(data_dir, [sim.write_json(tmp_path / "e.json", tasks)], CFG)
    labels = pd.read_parquet(data_dir / "labels.parquet")
    assert report.labels_changed == 1
    assert labels.iloc[0]["item_id"] == ids[0] and labels.iloc[0]["label"] == "owl"
    assert labels.iloc[0]["source"].startswith("labelstudio:")


def test_json_min_and_csv_give_the_same_labels_as_json(data, tmp_path):
    data_dir, schema, ids = data
    tasks = sim.simulate(
        ids[10:30],
        [schema.classes[i % 3] for i in range(20)],
        schema.classes,
        {1: 0.9, 2: 0.7, 3: 0.7},
        seed=3,
    )
    results = {}
    for name, path in {
        "json": sim.write_json(tmp_path / "e.json", tasks),
        "json-min": sim.write_json(tmp_path / "m.json", sim.to_json_min(tasks)),
        "csv": sim.write_csv(tmp_path / "m.csv", sim.to_json_min(tasks)),
    }.items():
        report = import_exports(data_dir, [path], CFG, write=False)
        assert report.files[0]["format"] == name and report.tasks == 20 and report.used == 60
        results[name] = report.resolution.items[["item_id", "label", "status"]].to_json()
    assert results["json"] == results["json-min"] == results["csv"]


def test_dawid_skene_strategy_from_config(data, tmp_path):
    data_dir, schema, ids = data
    tasks = sim.simulate(ids[10:30], ["dog"] * 20, schema.classes, {1: 0.95, 2: 0.9, 3: 0.5}, seed=1)
    report = import_exports(
        data_dir,
        [sim.write_json(tmp_path / "e.json", tasks)],
        CFG.model_copy(update={"strategy": "dawid_skene"}),
    )
    assert report.resolution.strategy == "dawid_skene"
    assert set(report.resolution.annotator_reliability) == {"1", "2", "3"}
    assert json.dumps(report.rows())  # the table artifact rows are plain JSON


def test_csv_with_byte_order_mark_and_multi_choice_cell(data, tmp_path):
    data_dir, _, ids = data
    rows = [
        {"item_id": ids[12], "id": 1, "label": "owl", "annotator": "a@x", "annotation_id": 1},
        {
            "item_id": ids[12],
            "id": 1,
            "label": {"choices": ["owl", "cat"]},
            "annotator": "b@x",
            "annotation_id": 2,
        },
        {"item_id": ids[12], "id": 1, "label": "owl", "annotator": "c@x", "annotation_id": 3},
    ]
    path = sim.write_csv(tmp_path / "e.csv", rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    report = import_exports(data_dir, [path], CFG)
    assert report.skipped == {"several choices": 1} and report.used == 2
    assert report.resolution.labeled.iloc[0]["label"] == "owl"
