"""The text kind end to end through the real CLI: `data import --text` of a generated CSV, then
`modelmill run` (the real packaged encoder, tiny); bad text files are one line and change nothing."""

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

CLI = str(Path(sys.executable).with_name("modelmill"))
GOOD = ["great", "wonderful", "moving", "superb", "delightful", "brilliant", "charming"]
BAD = ["awful", "boring", "dull", "tedious", "clumsy", "lifeless", "bland"]
FILLER = ["the", "film", "story", "cast", "plot", "scenes", "director", "movie", "ending", "music"]


def modelmill(*args, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


def state(project: Path) -> dict[str, str]:
    files = [project / "data.dvc", *(project / "data").rglob("*"), *(project / ".dvc" / "cache").rglob("*")]
    return {
        str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()
    }


def reviews(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(id, text, label): each text has two sentiment words of its class among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILLER, 4) + rng.sample(GOOD if label == "pos" else BAD, 2)
        rng.shuffle(words)
        rows.append((f"r{i:04d}", "the movie is " + " ".join(words) + f" {i}", label))
    return rows


def write_csv(path: Path, rows, header="id,review,sentiment") -> Path:
    path.write_text(header + "\n" + "".join(f'{i},"{t}",{lab}\n' for i, t, lab in rows), encoding="utf-8")
    return path


def tiny_text_settings(project: Path, mode: str) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["text"].update({"mode": mode, "finetune_epochs": 1})
    params["train"].update({"epochs": 3, "batch_size": 32})
    if mode == "finetune":  # token-level word dropout and swaps on the training batches
        params["augment"].update({"enabled": True, "text": {"word_dropout": 0.1, "word_swap": 0.1}})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_text_import_then_run_trains_evaluates_and_registers(project, tmp_path, mode):
    csv = write_csv(tmp_path / "reviews.csv", reviews(300))
    args = ("--text", "review", "--target", "sentiment", "--id", "id")
    imported = modelmill("data", "import", str(csv), *args, cwd=project)
    assert imported.returncode == 0, imported.stderr
    assert "text dataset 'reviews': 300 items, 300 labeled, classes ['neg', 'pos']" in imported.stdout
    schema = yaml.safe_load((project / "data" / "dataset.json").read_text())
    assert schema["kind"] == "text" and schema["text_column"] == "review" and schema["language"] == "en"
    assert schema["lengths"]["words_mean"] == 10.0
    tiny_text_settings(project, mode)
    result = modelmill("run", cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "version 1: promoted to champion" in result.stdout
    log = next((project / ".modelmill" / "logs").glob("*-run-*.log")).read_text()
    assert " texts/s" in log  # the training throughput
    from tests.support.mlflow_store import client_for

    client = client_for(project)
    run = client.get_run(client.get_model_version("digits-classifier", "1").run_id)
    assert run.data.params["model.text.mode"] == mode
    assert ("augment.hash" in run.data.params) == (mode == "finetune")
    assert run.data.metrics["test_macro_f1"] >= 0.9  # two sentiment words per text: separable
    assert_text_evaluation(client, run, tmp_path)
    if mode == "frozen":
        assert list((project / ".modelmill" / "cache" / "embeddings").glob("*.safetensors"))
        label_studio_round_trip(project, tmp_path)


def assert_text_evaluation(client, run, tmp_path: Path) -> None:
    """Token attributions and text perturbations reached the run: figures, checks, the HTML page."""
    metrics = run.data.metrics
    assert metrics["robust_char_noise_rate_0"] == metrics["robust_clean_accuracy"]
    assert metrics["robust_word_drop_rate_0.3"] < metrics["robust_clean_accuracy"]
    expected = {"robust_noise_sigma_0.2", "explain_deletion_auc_ratio", "explain_check_ig_completeness"}
    assert expected <= set(metrics)
    assert metrics["explain_completeness_error_median"] <= 0.01
    page = client.download_artifacts(run.info.run_id, "evaluation/token_attributions.html", str(tmp_path))
    assert Path(page).read_text().count("<p><b>") == 4  # two probes per class
    budget = sum(v for k, v in metrics.items() if k.startswith("evaluation_seconds_"))
    assert budget <= 60, budget  # issue 16: the extras add at most 60 s on the text workload


def label_studio_round_trip(project: Path, tmp_path: Path) -> None:
    """export-tasks: <Text> + <Choices>, the champion's predictions; import-labels of the annotated
    export (the item id in task data) relabels those items in a new data version."""
    outbox = tmp_path / "outbox"
    exported = modelmill("export-tasks", "-o", str(outbox), "--count", "6", "--include-labeled", cwd=project)
    assert exported.returncode == 0, exported.stderr
    config = (outbox / "labeling_config.xml").read_text()
    assert '<Text name="text" value="$text"/>' in config and '<Choices name="label" toName="text"' in config
    tasks = json.loads((outbox / "tasks.json").read_text())
    assert len(tasks) == 6 and all(t["data"]["text"].startswith("the movie is ") for t in tasks)
    prediction = tasks[0]["predictions"][0]
    assert prediction["model_version"] == "digits-classifier/1"
    assert prediction["result"][0]["to_name"] == "text" and prediction["result"][0]["value"]["choices"][
        0
    ] in (
        "neg",
        "pos",
    )
    flipped = {}
    for i, t in enumerate(tasks):
        old = t["predictions"][0]["result"][0]["value"]["choices"][0]
        flipped[t["data"]["item_id"]] = new = "pos" if old == "neg" else "neg"
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [new]}}]
        t["id"], t["annotations"] = (
            i + 1,
            [{"id": i + 1, "completed_by": 1, "result": result, "was_cancelled": False}],
        )
    export = tmp_path / "project-1-at-2026-12-01.json"
    export.write_text(json.dumps(tasks))
    imported = modelmill("import-labels", str(export), cwd=project)
    assert imported.returncode == 0, imported.stdout[-2000:] + imported.stderr[-2000:]
    labels = pd.read_parquet(project / "data" / "labels.parquet").set_index("item_id")["label"]
    assert {item: labels[item] for item in flipped} == flipped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'id,review,sentiment\nr1,"fine",pos\nr2,"",neg\n', "row 2, column 'review': missing or blank text"),
        (
            b"id,review,sentiment\nr1,ok,pos\nr2,caf\xe9,neg\n",
            "row 2: not UTF-8 text (save the file as UTF-8)",
        ),
        (
            b"id,body,sentiment\nr1,ok,pos\n",
            "no column 'review' (--text); columns: ['id', 'body', 'sentiment']",
        ),
        (b"id,review,sentiment\nr1,a,pos\nr1,b,neg\n", "row 2, column 'id': duplicate id 'r1'"),
        (b"id,review,sentiment\nr1,a,pos\nr2,b,pos\n", "column 'sentiment': only 'pos' in the target column"),
    ],
    ids=["blank", "latin-1", "no-column", "duplicate-id", "one-class"],
)
def test_bad_text_file_is_one_line_and_data_stays_byte_identical(project, tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    before = state(project)
    result = modelmill("data", "import", str(bad), "--text", "review", "--target", "sentiment", "--id", "id",
                       cwd=project)  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.strip().startswith(f"error: {bad}") and message in result.stderr
    assert state(project) == before
