"""Augmentation: the spec validates and round-trips, batches are seeded across processes."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from modelmill.augment import (
    augment_images,
    augment_table,
    augment_texts,
    augmenter_for,
    batch_generator,
    robustness_table,
    rotated,
    spec_from_json,
    spec_hash,
    spec_json,
)
from modelmill.config import (
    AugmentConfig,
    ImageAugment,
    ModelConfig,
    TabularAugment,
    TrainConfig,
    load_settings,
)
from modelmill.errors import AugmentationError, ConfigError
from modelmill.models import build_model
from modelmill.training import train

REPO = Path(__file__).resolve().parents[2]
IMAGES = AugmentConfig(
    enabled=True,
    seed=7,
    image=ImageAugment(rotation=15, scale=0.1, translate=0.1, crop=0.2, noise=0.05, erasing=0.5, p=1.0),
)
BATCH_HASH = """
import hashlib, torch
from modelmill.augment import augmenter_for
from modelmill.config import AugmentConfig
cfg = AugmentConfig.model_validate_json({spec!r})
x = torch.linspace(0, 1, 64 * 64).reshape(64, 1, 8, 8)
out, _ = augmenter_for(cfg, "image", train_seed=0)(x, torch.zeros(64, dtype=torch.long), {step})
print(hashlib.sha256(out.numpy().tobytes()).hexdigest())
"""


def batch_hash_in_subprocess(cfg: AugmentConfig, step: int) -> str:
    code = BATCH_HASH.format(spec=cfg.model_dump_json(), step=step)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return out.stdout.strip()


def test_two_processes_with_one_seed_give_the_same_batch():
    first, second = batch_hash_in_subprocess(IMAGES, 3), batch_hash_in_subprocess(IMAGES, 3)
    x = torch.linspace(0, 1, 64 * 64).reshape(64, 1, 8, 8)
    here, _ = augmenter_for(IMAGES, "image", 0)(x, torch.zeros(64, dtype=torch.long), 3)
    assert first == second == hashlib.sha256(here.numpy().tobytes()).hexdigest()
    assert batch_hash_in_subprocess(IMAGES, 4) != first  # the next batch draws afresh


def test_spec_round_trips_and_its_hash_follows_it():
    text = spec_json(IMAGES, "image")
    assert spec_from_json(text) == IMAGES and spec_json(spec_from_json(text), "image") == text
    changed = IMAGES.model_copy(update={"image": IMAGES.image.model_copy(update={"rotation": 10})})
    assert spec_hash(changed, "image") != spec_hash(IMAGES, "image")
    assert spec_hash(AugmentConfig(), "image") == "off"
    with pytest.raises(AugmentationError, match="augmentation.json"):
        spec_from_json('{"kind": "image", "image": {"rotation": "a lot"}}')


def test_a_bad_spec_fails_naming_the_key():
    with pytest.raises(ValidationError):
        ImageAugment(rotation=200)
    with pytest.raises(ConfigError, match=r"augment\.image\.erasing"):
        load_settings(None, {"augment.image.erasing": 1.5})
    with pytest.raises(ConfigError, match=r"augment\.image\.rotate: Extra inputs"):
        load_settings(None, {"augment.image": {"rotate": 10}})


def test_images_keep_shape_and_range_and_a_zero_spec_is_the_identity():
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = augment_images(x, IMAGES.image, batch_generator(1, 0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and not torch.equal(out, x)
    assert torch.equal(augment_images(x, ImageAugment(), batch_generator(1, 0)), x)
    erased = augment_images(torch.ones(32, 1, 8, 8), ImageAugment(erasing=1.0, p=1.0), batch_generator(1, 0))
    assert ((erased == 0).flatten(1).sum(1) > 0).all()


def test_a_share_p_of_the_images_is_transformed_and_the_rest_pass_unchanged():
    x = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    half = IMAGES.image.model_copy(update={"p": 0.5})
    out = augment_images(x, half, batch_generator(1, 0))
    unchanged = (out == x).flatten(1).all(1)
    assert 160 < int(unchanged.sum()) < 240  # Binomial(400, 0.5): 4.5 standard deviations either side
    assert not (out == x).flatten(1).all(1).all() and torch.equal(
        out, augment_images(x, half, batch_generator(1, 0))
    )
    assert not (augment_images(x, IMAGES.image, batch_generator(1, 0)) == x).flatten(1).all(1).any()
    with pytest.raises(ConfigError, match=r"augment\.image\.p"):
        load_settings(None, {"augment.image.p": 0})


def test_rotation_by_90_degrees_turns_the_image():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 0, 4] = 1.0  # top centre
    turned = rotated(x, 90.0)
    assert turned[0, 0].argmax() in (4 * 9 + 8, 4 * 9)  # to the middle of the right or left edge


def test_tabular_noise_on_numeric_columns_and_mixup_labels():
    x, y = torch.zeros(16, 3), torch.arange(16) % 4
    noisy, same_y = augment_table(x, y, TabularAugment(noise=1.0), batch_generator(0, 0), numeric=[0, 2])
    assert (noisy[:, 1] == 0).all() and (noisy[:, 0] != 0).all() and torch.equal(same_y, y)
    mixed, soft = augment_table(x, y, TabularAugment(mixup=0.4), batch_generator(0, 0), num_classes=5)
    assert soft.shape == (16, 5) and torch.allclose(soft.sum(1), torch.ones(16))
    with pytest.raises(AugmentationError, match="mixup needs the number of classes"):
        augmenter_for(AugmentConfig(enabled=True, tabular=TabularAugment(mixup=0.4)), "tabular", 0)


def test_training_with_mixup_soft_labels_runs():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 8, 8, generator=g), torch.randint(0, 2, (128,), generator=g)
    cfg = AugmentConfig(enabled=True, tabular=TabularAugment(mixup=0.4))
    mixup = augmenter_for(cfg, "tabular", 0, num_classes=2)
    small = TrainConfig(epochs=1, batch_size=32, num_threads=1)
    result = train(
        build_model((8, 8), 2, ModelConfig(width=2, depth=1, hidden=4)), (x, y), (x, y), small, augment=mixup
    )
    assert 0 <= result.history[0].train_accuracy <= 1


def test_augmentation_touches_training_batches_only_and_stays_seeded():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 1, 8, 8, generator=g), torch.randint(0, 2, (96,), generator=g)
    seen: list[int] = []
    augmenter = augmenter_for(IMAGES, "image", 0)

    def spy(xb, yb, step):
        seen.append(len(xb))
        return augmenter(xb, yb, step)

    cfg, model_cfg = (
        TrainConfig(epochs=2, batch_size=32, num_threads=1),
        ModelConfig(width=2, depth=1, hidden=4),
    )
    torch.manual_seed(0)
    a = train(build_model((8, 8), 2, model_cfg), (x, y), (x[:40], y[:40]), cfg, augment=spy)
    torch.manual_seed(0)
    b = train(build_model((8, 8), 2, model_cfg), (x, y), (x[:40], y[:40]), cfg, augment=augmenter)
    assert seen == [32, 32, 32] * 2  # three training batches per epoch, never the validation items
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_texts_word_dropout_and_swap():
    from modelmill.config import TextAugment

    texts = ["the film was a quiet triumph", "dull"]
    cfg = TextAugment(word_dropout=0.3, word_swap=0.3)
    out = augment_texts(texts, cfg, seed=1)
    assert out == augment_texts(texts, cfg, seed=1) and out != augment_texts(texts, cfg, seed=2)
    assert out[1] == "dull" and set(out[0].split()) <= set(texts[0].split())
    assert augment_texts(texts, TextAugment(), seed=1) == texts


def test_robustness_table_has_clean_and_perturbed_copies():
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(20, dtype=torch.long)
    table = robustness_table(build_model((8, 8), 2, ModelConfig(width=2, depth=1, hidden=4)), x, y, "image")
    assert list(table) == ["clean", "rotated +15", "rotated -15", "scaled 0.8", "scaled 1.2", "noisy 0.1"]
    assert all(0 <= v <= 1 for v in table.values())


def test_token_ids_lose_and_swap_whole_words_and_keep_cls_sep_and_padding():
    """augment.text on the tokenizer's ids: a word and its '##' pieces move or go together, seeded."""
    import pandas as pd

    from modelmill.augment import BatchAugmenter
    from modelmill.config import AugmentConfig
    from modelmill.kinds.text import fit_preprocessor, text_schema

    texts = ["the unbelievably charming film", "an overwrought, tedious plot twist"]
    schema = text_schema("t", ("a", "b"), pd.Series(texts), "body")
    pre = fit_preprocessor(pd.DataFrame({"body": texts}), schema)
    ids = pre.transform_texts(texts)
    pieces = pre.word_pieces()
    cfg = AugmentConfig(enabled=True, text={"word_dropout": 0.3, "word_swap": 0.3})
    augment = BatchAugmenter(cfg, "text", seed=7, vocabulary=pieces)
    y = torch.tensor([0, 1])
    out, same_y = augment(ids, y, step=3)
    assert torch.equal(out, augment(ids, y, step=3)[0]) and same_y is y
    assert any(not torch.equal(augment(ids, y, step=s)[0], ids) for s in range(5))

    def words(row):
        tokens = [pre.tokenizer.id_to_token(t) for t in row.tolist() if t not in pieces.special]
        return " ".join(tokens).replace(" ##", "").split()

    for before, after in zip(ids, out, strict=True):
        assert after[0] == before[0] and int((after != 0).sum()) <= int((before != 0).sum())
        assert pre.tokenizer.id_to_token(int(after[after != 0][-1])) == "[SEP]"
        assert set(words(after)) <= set(words(before)) and words(after)  # whole words, never none
    off = BatchAugmenter(AugmentConfig(enabled=True), "text", seed=7, vocabulary=pieces)
    assert torch.equal(off(ids, y, step=0)[0], ids)


def test_frozen_text_mode_refuses_augmentation_with_a_clear_error():
    from modelmill.config import TextModelConfig, TrainConfig
    from modelmill.errors import ConfigError
    from modelmill.text_training import train_text

    xy = (torch.zeros(2, 4, dtype=torch.long), torch.tensor([0, 1]))
    frozen = TextModelConfig(mode="frozen")
    with pytest.raises(ConfigError, match="augment.text needs model.text.mode: finetune"):
        train_text(None, xy, xy, TrainConfig(), frozen, augment=lambda x, y, s: (x, y))
