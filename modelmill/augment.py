"""Augmentation as configuration: random transforms of training batches (images through kornia,
tabular noise and mixup, text word dropout and swap), seeded by (seed, batch number)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from kornia.geometry.transform import get_affine_matrix2d, warp_affine

from modelmill.config import AugmentConfig, ImageAugment, TabularAugment, TextAugment
from modelmill.errors import AugmentationError

Kind = Literal["image", "tabular", "text"]


def spec_json(cfg: AugmentConfig, kind: Kind) -> str:
    """The spec that applies to `kind` as canonical JSON (what `augmentation.json` holds)."""
    part = {"image": cfg.image, "tabular": cfg.tabular, "text": cfg.text}[kind]
    body = {"enabled": cfg.enabled, "seed": cfg.seed, "kind": kind, kind: part.model_dump(mode="json")}
    return json.dumps(body, sort_keys=True, indent=2) + "\n"


def spec_hash(cfg: AugmentConfig, kind: Kind) -> str:
    """sha256 of the spec (a param of the run, part of its fingerprint); 'off' when disabled."""
    if not cfg.enabled:
        return "off"
    return hashlib.sha256(spec_json(cfg, kind).encode()).hexdigest()[:16]


def spec_from_json(text: str) -> AugmentConfig:
    """The AugmentConfig a `spec_json` text describes (validated as params.yaml is)."""
    try:
        raw = json.loads(text)
        kind = raw.pop("kind")
        return AugmentConfig.model_validate({**raw, kind: raw.pop(kind)})
    except (ValueError, KeyError, TypeError) as exc:
        raise AugmentationError(f"augmentation.json: not a valid augmentation spec ({exc})") from None


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of batch `step`: the same (seed, step) gives the same draws in any process."""
    state = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class BatchAugmenter:
    """`augmenter(x, y, step) -> (x, y)`, the callable `train(..., augment=)` applies per batch."""

    def __init__(
        self,
        cfg: AugmentConfig,
        kind: Kind,
        seed: int,
        num_classes: int | None = None,
        numeric: Sequence[int] | None = None,
        vocabulary: WordPieces | None = None,
    ):
        if kind == "text" and vocabulary is None:
            raise AugmentationError("augment.text on token ids needs the tokenizer's word pieces")
        if kind == "tabular" and cfg.tabular.mixup and num_classes is None:
            raise AugmentationError("augment.tabular.mixup needs the number of classes")
        self.cfg, self.kind, self.seed = cfg, kind, seed
        self.num_classes, self.numeric, self.vocabulary = num_classes, numeric, vocabulary

    def __call__(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = batch_generator(self.seed, step)
        if self.kind == "image":
            return augment_images(x, self.cfg.image, generator), y
        if self.kind == "text":
            assert self.vocabulary is not None
            return augment_token_ids(x, self.cfg.text, generator, self.vocabulary), y
        return augment_table(x, y, self.cfg.tabular, generator, self.numeric, self.num_classes)


def augmenter_for(
    cfg: AugmentConfig,
    kind: Kind,
    train_seed: int,
    num_classes: int | None = None,
    numeric: Sequence[int] | None = None,
    vocabulary: WordPieces | None = None,
) -> BatchAugmenter | None:
    """The batch augmenter the configuration asks for (None when augmentation is off)."""
    if not cfg.enabled:
        return None
    seed = cfg.seed if cfg.seed is not None else train_seed
    return BatchAugmenter(cfg, kind, seed, num_classes, numeric, vocabulary)


# --- images ----------------------------------------------------------------------------------


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def affine(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate (degrees, clockwise), zoom and shift (pixels, (N, 2)) each image about its centre."""
    n, _, h, w = x.shape
    center = torch.tensor([(w - 1) / 2, (h - 1) / 2]).expand(n, 2)
    matrix = get_affine_matrix2d(shift, center, scale[:, None].expand(n, 2), angle)
    return warp_affine(x, matrix[:, :2], dsize=(h, w), padding_mode="zeros", align_corners=True)


def augment_images(x: torch.Tensor, cfg: ImageAugment, generator: torch.Generator) -> torch.Tensor:
    """A `cfg.p` share of the images gets one random draw of every configured transform, the
    others pass through unchanged (a model that sees only warped images loses clean accuracy);
    pixels stay in [0, 1]."""
    out = _transformed(x, cfg, generator)
    if cfg.p >= 1:
        return out
    chosen = torch.rand(x.shape[0], generator=generator) < cfg.p
    return torch.where(chosen[:, None, None, None], out, x)


def _transformed(x: torch.Tensor, cfg: ImageAugment, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    if cfg.rotation or cfg.scale or cfg.translate or cfg.crop:
        angle = _uniform(n, -cfg.rotation, cfg.rotation, generator)
        scale = _uniform(n, 1 - cfg.scale, 1 + cfg.scale, generator)
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * cfg.translate * torch.tensor([w, h])
        # a crop keeping area a, resized back, is a zoom by 1/sqrt(a) about a moved centre
        zoom = 1 / _uniform(n, 1 - cfg.crop, 1, generator).sqrt()
        room = (zoom - 1)[:, None] * torch.tensor([w, h]) / 2
        shift = shift + (torch.rand(n, 2, generator=generator) * 2 - 1) * room
        x = affine(x, angle, scale * zoom, shift)
    if cfg.noise:
        x = (x + cfg.noise * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    if cfg.erasing:
        x = x * ~_erasing_mask(x.shape, cfg, generator)
    return x


def _erasing_mask(shape: torch.Size, cfg: ImageAugment, generator: torch.Generator) -> torch.Tensor:
    """(N, 1, H, W) True inside one random rectangle for a `cfg.erasing` share of the images."""
    n, _, h, w = shape
    area = _uniform(n, 0.02, cfg.erasing_area, generator) * h * w
    ratio = torch.exp(_uniform(n, np.log(0.3), np.log(3.3), generator))
    eh = (area * ratio).sqrt().round().clamp(1, h)
    ew = (area / ratio).sqrt().round().clamp(1, w)
    top = (torch.rand(n, generator=generator) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=generator) * (w - ew + 1)).floor()
    chosen = torch.rand(n, generator=generator) < cfg.erasing
    rows, cols = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    inside = (rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
    inside = inside & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None])
    return (inside & chosen[:, None, None])[:, None]


# --- tables ----------------------------------------------------------------------------------


def augment_table(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TabularAugment,
    generator: torch.Generator,
    numeric: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian noise on the numeric columns (all when `numeric` is None), then mixup: rows and
    one-hot labels mixed with a shuffled copy (labels become (N, C) probabilities)."""
    if cfg.noise:
        noise = cfg.noise * torch.randn(x.shape, generator=generator)
        if numeric is not None:
            keep = torch.zeros(x.shape[1], dtype=torch.bool)
            keep[list(numeric)] = True
            noise = noise * keep
        x = x + noise
    if cfg.mixup:
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
        weight = torch.from_numpy(rng.beta(cfg.mixup, cfg.mixup, size=len(x))).float()
        partner = torch.randperm(len(x), generator=generator)
        classes = num_classes if num_classes is not None else int(y.max()) + 1
        soft = torch.nn.functional.one_hot(y, classes).float() if y.ndim == 1 else y
        rows = weight.view(-1, *[1] * (x.ndim - 1))
        x = rows * x + (1 - rows) * x[partner]
        y = weight[:, None] * soft + (1 - weight[:, None]) * soft[partner]
    return x, y


# --- texts -----------------------------------------------------------------------------------


def augment_texts(texts: Sequence[str], cfg: TextAugment, seed: int, step: int = 0) -> list[str]:
    """Word dropout (never the last word of a text) and swaps of adjacent words."""
    rng = random.Random(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))
    out = []
    for text in texts:
        words = text.split()
        kept = [word for word in words if rng.random() >= cfg.word_dropout] or words[-1:]
        for i in range(len(kept) - 1):
            if rng.random() < cfg.word_swap:
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
        out.append(" ".join(kept))
    return out


@dataclass(frozen=True)
class WordPieces:
    """What token-level word augmentation needs of a tokenizer, as masks over its vocabulary."""

    continuations: frozenset[int]  # ids of '##' pieces: they continue the word before them
    special: frozenset[int]  # [CLS], [SEP], [PAD]...: kept where they are


def augment_token_ids(
    ids: torch.Tensor, cfg: TextAugment, generator: torch.Generator, vocabulary: WordPieces
) -> torch.Tensor:
    """`augment_texts` on token ids (N, L): each word (a token and its '##' continuations) dropped
    with probability word_dropout (never every word of a text), adjacent words swapped with
    probability word_swap; [CLS] first, [SEP] after the words, padding after that."""
    if cfg.word_dropout == 0 and cfg.word_swap == 0:
        return ids
    out = torch.zeros_like(ids)
    for row, tokens in enumerate(ids.tolist()):
        content = [i for i, t in enumerate(tokens) if t not in vocabulary.special]
        if not content:
            out[row] = ids[row]
            continue
        words: list[list[int]] = []
        for i in content:
            if tokens[i] not in vocabulary.continuations or not words:
                words.append([])
            words[-1].append(tokens[i])
        drop = torch.rand(len(words), generator=generator) < cfg.word_dropout
        kept = [w for w, gone in zip(words, drop.tolist(), strict=True) if not gone] or words[-1:]
        swaps = (torch.rand(max(len(kept) - 1, 1), generator=generator) < cfg.word_swap).tolist()
        for i in range(len(kept) - 1):
            if swaps[i]:
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
        before = tokens[: content[0]]
        after = [t for t in tokens[content[-1] + 1 :] if t != 0]
        new = (before + [t for w in kept for t in w] + after)[: len(tokens)]
        out[row, : len(new)] = torch.tensor(new, dtype=ids.dtype)
    return out


# --- fixed perturbations (robustness tables, drift benchmarks) -------------------------------


def rotated(x: torch.Tensor, degrees: float) -> torch.Tensor:
    n = len(x)
    return affine(x, torch.full((n,), float(degrees)), torch.ones(n), torch.zeros(n, 2))


def scaled(x: torch.Tensor, factor: float) -> torch.Tensor:
    n = len(x)
    return affine(x, torch.zeros(n), torch.full((n,), float(factor)), torch.zeros(n, 2))


def noisy(x: torch.Tensor, std: float, seed: int = 0, clamp: bool = True) -> torch.Tensor:
    out = x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return out.clamp(0, 1) if clamp else out


# --- the augmentation-robustness table -------------------------------------------------------

Perturbation = Callable[[torch.Tensor], torch.Tensor]
IMAGE_PERTURBATIONS: dict[str, Perturbation] = {
    "rotated +15": lambda x: rotated(x, 15.0),
    "rotated -15": lambda x: rotated(x, -15.0),
    "scaled 0.8": lambda x: scaled(x, 0.8),
    "scaled 1.2": lambda x: scaled(x, 1.2),
    "noisy 0.1": lambda x: noisy(x, 0.1),
}
TABULAR_PERTURBATIONS: dict[str, Perturbation] = {
    "noisy 0.1": lambda x: noisy(x, 0.1, clamp=False),
    "noisy 0.3": lambda x: noisy(x, 0.3, clamp=False),
}


def robustness_table(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, kind: Kind
) -> dict[str, float]:
    """Accuracy on the clean test split and on perturbed copies of it (fixed, seeded); texts are
    perturbed before encoding, so the text kind's table is built from `augment_texts`."""
    from modelmill.training import predict_proba

    perturbations = IMAGE_PERTURBATIONS if kind == "image" else TABULAR_PERTURBATIONS
    if kind == "text":
        raise AugmentationError("robustness of texts: perturb with augment_texts, then encode")

    def accuracy(inputs: torch.Tensor) -> float:
        return float((predict_proba(model, inputs).argmax(1) == y).float().mean())

    return {"clean": accuracy(x)} | {name: accuracy(make(x)) for name, make in perturbations.items()}
