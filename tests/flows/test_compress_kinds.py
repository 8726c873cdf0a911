"""The compress stage for every data kind: a tabular, an RGB image and a text champion compressed by
`retrain`, `<name>-compressed` registered, loaded back verified and scoring raw inputs (real stack)."""

import base64
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.retrain import RetrainParams, retrain
from modelmill.data import bootstrap, load_dataset
from modelmill.data.imports import import_data
from modelmill.scoring import scorer_of
from tasks.modelstore import load_verified
from tests.support.mlflow_store import client_for

pytestmark = pytest.mark.usefixtures("prefect_harness")


def configure(project: Path, **dotted) -> None:
    """Dotted settings (section.key or section.sub.key) written to params.yaml; compression on, any
    int8 variant within budget (a tiny model is near ties everywhere: the rule has its unit tests)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    settings = {"train.num_threads": 1, "compress.enabled": True, "compress.budget_points": 10.0, **dotted}
    for key, value in settings.items():
        *path, leaf = key.split(".")
        section = params
        for part in path:
            section = section.setdefault(part, {})
        section[leaf] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def compressed(project: Path, summary: dict, name: str):
    """The registered `<name>-compressed` champion: its version and a scorer of its verified load."""
    registered = summary["compression"]["registered"]
    assert registered is not None and registered["name"] == f"{name}-compressed", summary["compression"]
    client = client_for(project)
    version = client.get_model_version_by_alias(f"{name}-compressed", "champion")
    assert version.tags["source_version"] == summary["registry"]["version"]
    assert f"{name}-compressed version" in summary["compression_note"]
    into = Path(tempfile.mkdtemp(prefix="verified-", dir=project))  # kept: model.onnx is read from it
    return version, scorer_of(load_verified(client, f"{name}-compressed", version.version, into=into))


def accuracy_on_raw(scorer, inputs: list, labels: list[str]) -> float:
    answers = scorer.answers(scorer.logits(scorer.raw_input(inputs)))
    return float(np.mean([a["label"] == label for a, label in zip(answers, labels, strict=True)]))


def raw_test_split(project: Path):
    """The schema and the raw labeled test rows of the run (the same hash split)."""
    from modelmill.config import load_settings
    from modelmill.split import split_frame

    dataset = load_dataset(project / "data")
    settings = load_settings(project / "params.yaml")
    return dataset.schema, split_frame(dataset.labeled(), settings.split)["test"]


def test_tabular_champion_is_compressed_and_its_variant_takes_raw_rows(project):
    shutil.rmtree(project / "data")
    bootstrap(project / "data", "breast_cancer")
    configure(project, **{"data.source": "breast_cancer", "registry.model_name": "cancer"})
    summary = retrain(RetrainParams(project_dir=str(project), epochs=4))
    names = [row["name"] for row in summary["compression"]["table"]]
    assert {"float", "dynamic_int8", "static_int8", "pruned_80", "distilled"} <= set(names)
    assert summary["compression"]["not_applicable"] == {}
    version, scorer = compressed(project, summary, "cancer")
    assert scorer.kind == "tabular" and scorer.preprocessor is not None
    schema, test = raw_test_split(project)
    columns = schema.feature_columns
    records = [{c: (None if np.isnan(v) else float(v)) for c, v in zip(columns, r, strict=True)}
               for r in test[columns].itertuples(index=False)]  # fmt: skip
    # raw rows through the variant's own stored preprocessor: the accuracy measured on the split's tensors
    accuracy = accuracy_on_raw(scorer, records, test["label"].astype(str).tolist())
    assert accuracy == pytest.approx(float(version.tags["accuracy"]), abs=1e-5)


def photos(root: Path) -> Path:
    """An RGB folder: reddish `apple`, bluish `berry` (PNG)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, color in (("apple", (200, 40, 40)), ("berry", (40, 40, 200))):
        (root / label).mkdir(parents=True)
        for i in range(50):
            grid = np.clip(np.array(color) + rng.integers(-40, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(grid).save(root / label / f"{i:03d}.png")
    return root


def test_rgb_champion_is_compressed_and_its_variant_takes_raw_images(project, tmp_path):
    folder = photos(tmp_path / "photos")
    import_data(folder, project / "data", image_size=(8, 8), name="fruit")
    configure(project, **{"registry.model_name": "fruit"})
    summary = retrain(RetrainParams(project_dir=str(project), epochs=2))
    names = [row["name"] for row in summary["compression"]["table"]]
    assert {"float", "dynamic_int8", "static_int8", "pruned_80", "distilled"} <= set(names)
    assert summary["compression"]["not_applicable"] == {}
    version, scorer = compressed(project, summary, "fruit")
    assert scorer.kind == "image" and scorer.input_shape == (3, 8, 8)
    schema, test = raw_test_split(project)
    pixels = [list(map(float, row)) for row in test[schema.feature_columns].to_numpy()]
    accuracy = accuracy_on_raw(scorer, pixels, test["label"].astype(str).tolist())
    assert accuracy == pytest.approx(float(version.tags["accuracy"]), abs=1e-5)
    files = sorted(folder.glob("*/*.png"))[::10]  # photo files too: decoded, resized, normalised
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in files]
    assert scorer.raw_input(encoded).shape == (len(files), 3, 8, 8)


GOOD = ["great", "wonderful", "moving", "superb", "delightful", "brilliant", "charming"]
BAD = ["awful", "boring", "dull", "tedious", "clumsy", "lifeless", "bland"]
FILLER = ["the", "film", "story", "cast", "plot", "scenes", "director", "movie", "ending", "music"]


def reviews(path: Path, n: int) -> Path:
    """A CSV of texts with two sentiment words of their class among filler words."""
    rng, texts, labels = random.Random(0), [], []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILLER, 4) + rng.sample(GOOD if label == "pos" else BAD, 2)
        rng.shuffle(words)
        texts.append("the movie is " + " ".join(words))
        labels.append(label)
    lines = [f'r{i},"{t}",{lab}\n' for i, (t, lab) in enumerate(zip(texts, labels, strict=True))]
    path.write_text("id,review,sentiment\n" + "".join(lines))
    return path


def test_text_champion_is_distilled_and_its_variant_takes_raw_texts(project, tmp_path):
    csv = reviews(tmp_path / "reviews.csv", 300)
    import_data(csv, project / "data", text="review", target="sentiment", id_column="id")
    configure(
        project,
        **{"registry.model_name": "reviews", "model.text.finetune_epochs": 1, "train.batch_size": 32,
           "compress.distill_epochs": 1, "compress.latency_batch_sizes": [1, 32],
           "compress.serving_batch_size": 32},
    )  # fmt: skip
    summary = retrain(RetrainParams(project_dir=str(project)))
    table = {row["name"]: row for row in summary["compression"]["table"]}
    assert list(table) == ["float", "dynamic_int8", "distilled"]
    assert table["distilled"]["parameters"] < table["float"]["parameters"]
    assert set(summary["compression"]["not_applicable"]) == {"static_int8", "prune"}
    assert 0.0 <= summary["compression"]["explanation_iou"] <= 1.0  # words occluded with [MASK]
    version, scorer = compressed(project, summary, "reviews")
    assert scorer.kind == "text" and scorer.input_dtype == "int64"
    assert scorer.preprocessor is not None and scorer.preprocessor.tokenizer_sha256  # the tokenizer travels
    schema, test = raw_test_split(project)
    accuracy = accuracy_on_raw(scorer, test[schema.text_column].tolist(), test["label"].astype(str).tolist())
    assert accuracy == pytest.approx(float(version.tags["accuracy"]), abs=1e-5)
