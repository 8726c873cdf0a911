"""The image kind: per-channel normalisation fitted on train, RGB, raw images for prediction."""

import base64
import io

import numpy as np
import pandas as pd
import pytest
import torch

from modelmill.config import ModelConfig
from modelmill.errors import PredictionInputError
from modelmill.kinds import default_model
from modelmill.kinds import image as kind
from modelmill.kinds.image import ImageSchema

RGB = ImageSchema("rgb", ("a", "b"), (2, 3), (0.0, 255.0), channels=3)


def pixels(rows):
    return pd.DataFrame(np.asarray(rows, dtype=np.uint8), columns=RGB.feature_columns)


def test_each_channel_is_normalised_by_train_statistics_only():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (50, 18))
    train[:, 6:12] = 255  # the green channel is saturated in train
    prep = kind.fit_preprocessor(pixels(train), RGB)
    assert len(prep.mean) == 3 and prep.mean[1] == 1.0 and prep.std[1] == 1e-6
    x = prep.transform(pixels(train)).numpy()
    assert x.shape == (50, 3, 2, 3)
    assert abs(x[:, 0].mean()) < 1e-5 and abs(x[:, 0].std() - 1) < 1e-4
    other = pixels(np.zeros((1, 18)))
    assert prep == kind.fit_preprocessor(pixels(train), RGB)
    assert np.isclose(prep.transform(other).numpy()[0, 0, 0, 0], -prep.mean[0] / prep.std[0])


def _image_bytes(mode, size, fmt):
    from PIL import Image

    image = Image.new(mode, size, color=(200, 10, 30) if mode == "RGB" else 128)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_raw_images_are_decoded_resized_and_converted():
    png = base64.b64encode(_image_bytes("L", (9, 7), "PNG")).decode()
    jpeg = "data:image/jpeg;base64," + base64.b64encode(_image_bytes("RGB", (30, 20), "JPEG")).decode()
    frame = kind.parse_raw([png, jpeg], RGB)
    assert frame.shape == (2, 18)
    grid = frame.to_numpy().reshape(2, 3, 2, 3)
    assert (grid[0] == 128).all()  # grey becomes three equal channels
    assert abs(int(grid[1, 0, 0, 0]) - 200) < 8 and grid[1, 1].max() < 30
    with pytest.raises(PredictionInputError, match="input 1: not a decodable image"):
        kind.parse_raw([png, base64.b64encode(b"not an image").decode()], RGB)


def test_default_model_takes_the_schema_channels():
    model = default_model(RGB, ModelConfig(width=4, depth=1, hidden=8), None)
    assert model.spec["channels"] == 3 and "tabular" not in model.spec["config"]
    assert model.eval()(torch.zeros(2, 3, 2, 3)).shape == (2, 2)


def test_task_data_is_a_png_per_item_and_the_config_an_image_tag():
    items = pixels(np.full((2, 18), 255))
    items.insert(0, "item_id", ["x", "y"])
    tasks = kind.task_data(items, RGB, "image")
    assert [t["item_id"] for t in tasks] == ["x", "y"]
    assert tasks[0]["image"].startswith("data:image/png;base64,")
    assert '<Image name="image" value="$image"/>' in kind.labeling_config(("a",), "label", "image", "image")
