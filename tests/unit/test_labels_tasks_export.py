"""The loop back: uncertainty selection, Label Studio tasks with predictions, labeling config."""

import base64
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from modelmill.config import LabelsConfig
from modelmill.data import load_dataset
from modelmill.labels import build_tasks, labeling_config, select_uncertain, uncertainty, write_tasks
from modelmill.labels.tasks_export import render_png
from tests.support import labelstudio_sim as sim

CFG = LabelsConfig()


def test_margin_and_entropy_rank_the_unsure_first():
    proba = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.34, 0.33, 0.33], [0.5, 0.5, 0.0]])
    assert np.argsort(-uncertainty(proba, "margin"), kind="stable")[:2].tolist() == [3, 2]
    assert np.argmax(uncertainty(proba, "entropy")) == 2
    assert uncertainty(proba, "entropy")[2] == pytest.approx(np.log(3), abs=1e-3)
    with pytest.raises(ValueError, match="unknown uncertainty"):
        uncertainty(proba, "vibes")


def test_selection_skips_labeled_items_unless_asked():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    ids = ["a", "b", "c"]
    assert list(select_uncertain(ids, proba, 2, exclude={"a"})["item_id"]) == ["c", "b"]
    assert list(select_uncertain(ids, proba, 2)["item_id"]) == ["a", "c"]


def test_tasks_carry_item_id_image_and_prediction(tmp_path):
    schema, ids = sim.tiny_dataset(tmp_path / "data")
    dataset = load_dataset(tmp_path / "data")
    proba = np.random.default_rng(0).dirichlet(np.ones(3), size=len(ids))
    chosen = select_uncertain(ids, proba, 5, method="entropy")
    tasks = build_tasks(chosen, dataset.items, proba, schema, CFG, model_version="m/7")
    path = write_tasks(tmp_path / "out" / "tasks.json", tasks)
    loaded = json.loads(path.read_text())
    first = loaded[0]
    row = ids.index(first["data"]["item_id"])
    prediction = first["predictions"][0]
    assert prediction["model_version"] == "m/7"
    assert prediction["score"] == pytest.approx(proba[row].max(), abs=1e-6)
    assert prediction["result"][0]["value"]["choices"] == [schema.classes[int(proba[row].argmax())]]
    assert prediction["result"][0]["from_name"] == "label" and prediction["result"][0]["to_name"] == "image"
    assert first["data"]["image"].startswith("data:image/png;base64,")


def test_png_is_a_valid_scaled_greyscale_image():
    from PIL import Image

    pixels = np.arange(64) % 17
    png = render_png(pixels, (8, 8), (0.0, 16.0), min_side=112)
    image = Image.open(io.BytesIO(png))
    assert image.size == (112, 112) and image.mode == "L"
    assert image.getpixel((0, 0)) == 255 and image.getpixel((14 * 7 + 1, 0)) == 255 - round(7 / 16 * 255)


def test_labeling_config_is_xml_with_one_choice_per_class():
    root = ET.fromstring(labeling_config(("0", "1", "a&b"), CFG))
    choices = root.find("Choices")
    assert choices.get("name") == "label" and choices.get("toName") == "image"
    assert [c.get("value") for c in choices] == ["0", "1", "a&b"]
    assert root.find("Image").get("value") == "$image"


def test_data_uri_decodes_to_png():
    from modelmill.labels.tasks_export import png_data_uri

    uri = png_data_uri(np.zeros(16), (4, 4), (0.0, 16.0))
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
