"""Bad exports: a clear error naming file and task/row, and the data folder byte-identical."""

import json

import pytest

from modelmill.config import LabelsConfig
from modelmill.errors import ExportFormatError
from modelmill.labels import import_exports
from tests.support import labelstudio_sim as sim
from tests.support.labelstudio_sim import annotation as ann

CFG = LabelsConfig()


@pytest.fixture
def data(tmp_path):
    _, ids = sim.tiny_dataset(tmp_path / "data")
    return tmp_path / "data", ids


def _good(ids, n=5):
    return [
        sim.task(i + 1, ids[10 + i], [ann(10 * i + 1, 1, "cat"), ann(10 * i + 2, 2, "cat")]) for i in range(n)
    ]


def _write(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _bad_cases(tmp, ids):
    good = json.dumps(_good(ids, 15))
    rect = [sim.task(1, ids[10], [ann(1, 1, "cat", kind="rectanglelabels", from_name="tag")])]
    unknown = [sim.task(1, "nope-1", [ann(1, 1, "cat")]), sim.task(2, "nope-2", [ann(2, 1, "dog")])]
    outside = [sim.task(1, ids[10], [ann(1, 1, "zebra")])]
    return {
        "truncated": (_write(tmp / "truncated.json", good[: len(good) // 2]), r"task #\d+: truncated JSON"),
        "not json": (_write(tmp / "notes.json", "this is not json"), r"byte 0: not JSON"),
        "json object": (_write(tmp / "obj.json", '{"data": {}}'), r"a JSON object; expected a JSON list"),
        "task not object": (_write(tmp / "nums.json", "[1, 2]"), r"task #0: expected a task object"),
        "rectangles": (
            sim.write_json(tmp / "rect.json", rect),
            r"task #0 \(id 1\), annotation 1: export of another kind",
        ),
        "unknown ids": (
            sim.write_json(tmp / "unknown.json", unknown),
            r"task #0 \(id 1\): no usable annotation.*nope-1",
        ),
        "outside classes": (sim.write_json(tmp / "zebra.json", outside), r"annotation 1: no usable.*'zebra'"),
        "empty list": (_write(tmp / "empty.json", "[]"), r"empty export: no tasks"),
        "zero bytes": (_write(tmp / "zero.json", b""), r"empty file"),
        "csv header only": (_write(tmp / "h.csv", "item_id,label,annotator\n"), r"empty export"),
        "csv no label column": (
            _write(tmp / "c.csv", "item_id,other\nit0010,cat\n"),
            r"row 1 \(header\): no column 'label'",
        ),
        "csv not utf8": (
            _write(tmp / "latin.csv", "item_id,label\nit0010,caf\xe9\n".encode("latin-1")),
            r"not UTF-8",
        ),
        "no annotations": (
            sim.write_json(tmp / "preds.json", [sim.task(1, ids[10], [], predictions=["cat"])]),
            r"no human annotations in 1 tasks \(1 predictions",
        ),
    }


CASES = [
    "truncated",
    "not json",
    "json object",
    "task not object",
    "rectangles",
    "unknown ids",
    "outside classes",
    "empty list",
    "zero bytes",
    "csv header only",
    "csv no label column",
    "csv not utf8",
    "no annotations",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_export_is_refused_and_data_is_untouched(data, tmp_path, case):
    data_dir, ids = data
    import_exports(data_dir, [sim.write_json(tmp_path / "first.json", _good(ids, 3))], CFG)  # a ledger exists
    before = sim.tree_digest(data_dir)
    path, message = _bad_cases(tmp_path, ids)[case]
    good = sim.write_json(tmp_path / "good.json", _good(ids, 8))
    with pytest.raises(ExportFormatError, match=message) as err:
        import_exports(data_dir, [good, path], CFG)  # a good file beside the bad one is not imported either
    assert str(path) in str(err.value)
    assert sim.tree_digest(data_dir) == before


def test_export_above_the_size_limit_is_refused(data, tmp_path):
    data_dir, ids = data
    before = sim.tree_digest(data_dir)
    big = sim.write_json(tmp_path / "big.json", _good(ids, 20) * 300)
    with pytest.raises(ExportFormatError, match=r"big.json: \d+ MB is above labels.max_export_mb=0.5"):
        import_exports(data_dir, [big], CFG.model_copy(update={"max_export_mb": 0.5}))
    assert sim.tree_digest(data_dir) == before


def test_some_bad_rows_are_skipped_and_reported(data, tmp_path):
    data_dir, ids = data
    tasks = _good(ids, 3) + [
        sim.task(9, "nope", [ann(91, 1, "cat")]),
        sim.task(10, ids[20], [ann(92, 1, "zebra")]),
        sim.task(11, ids[21], [ann(93, 1, ["cat", "dog"])]),
    ]
    report = import_exports(data_dir, [sim.write_json(tmp_path / "mixed.json", tasks)], CFG)
    assert report.skipped == {"unknown item id": 1, "label outside class set": 1, "several choices": 1}
    assert report.labels_new == 3
    assert any("task #3 (id 9): unknown item id 'nope'" in p for p in report.problems)


def test_strict_mode_refuses_any_skipped_row(data, tmp_path):
    data_dir, ids = data
    before = sim.tree_digest(data_dir)
    tasks = _good(ids, 3) + [sim.task(9, "nope", [ann(91, 1, "cat")])]
    with pytest.raises(ExportFormatError, match=r"task #3 \(id 9\): unknown item id 'nope' \(labels.strict"):
        import_exports(
            data_dir,
            [sim.write_json(tmp_path / "mixed.json", tasks)],
            CFG.model_copy(update={"strict": True}),
        )
    assert sim.tree_digest(data_dir) == before


def test_missing_file_is_named(data, tmp_path):
    with pytest.raises(ExportFormatError, match="missing.json: no such file"):
        import_exports(data[0], [tmp_path / "missing.json"], CFG)
