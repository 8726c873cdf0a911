"""Model definitions and the one way to rebuild them: every model carries a JSON `spec`
(family + constructor arguments) and `build_from_spec(spec)` makes the same module again,
so a stored model is weights + this spec, never pickled code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from modelmill.config import ModelConfig

Spec = dict[str, Any]


class ConvNet(nn.Module):
    """`depth` blocks of conv3x3-BN-ReLU (+2x2 max-pool while the map is at least 4 wide),
    then a hidden dense layer with dropout and the class logits."""

    def __init__(self, image_shape: tuple[int, int], num_classes: int, cfg: ModelConfig, channels: int = 1):
        super().__init__()
        self.spec: Spec = {
            "family": "convnet",
            "image_shape": list(image_shape),
            "num_classes": num_classes,
            "channels": channels,
            "config": cfg.model_dump(mode="json", exclude={"tabular", "text"}),
        }
        layers: list[nn.Module] = []
        (h, w) = image_shape
        for block in range(cfg.depth):
            out = cfg.width * 2**block
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            if min(h, w) >= 4:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * h * w, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _convnet(spec: Spec) -> nn.Module:
    return ConvNet(
        tuple(spec["image_shape"]),
        int(spec["num_classes"]),
        ModelConfig.model_validate(spec["config"]),
        channels=int(spec.get("channels", 1)),
    )


class DenseNet(nn.Module):
    """`depth` hidden layers Linear-ReLU-Dropout of `width` units, then the output layer.

    Binary (num_classes 2): one output unit z, its sigmoid the probability of class 1. The
    module returns the logits [0, z]: their softmax is (1 - sigmoid(z), sigmoid(z)) and their
    cross-entropy equals binary cross-entropy on z, so the training loop, evaluation and
    compression treat every model alike. Multiclass: one logit per class (softmax).
    """

    def __init__(self, inputs: int, num_classes: int, width: int = 64, depth: int = 2, dropout: float = 0.1):
        super().__init__()
        self.spec: Spec = {
            "family": "dense",
            "inputs": inputs,
            "num_classes": num_classes,
            "width": width,
            "depth": depth,
            "dropout": dropout,
        }
        layers: list[nn.Module] = []
        size = inputs
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        self.body = nn.Sequential(*layers)
        self.binary = num_classes == 2
        self.head = nn.Linear(size, 1 if self.binary else num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.body(x))
        return torch.cat([torch.zeros_like(z), z], dim=1) if self.binary else z

    def positive_logit(self, x: torch.Tensor) -> torch.Tensor:
        """Binary only: the sigmoid output's logit z, shape (N,)."""
        return self.head(self.body(x))[:, 0]


def _dense(spec: Spec) -> nn.Module:
    return DenseNet(
        int(spec["inputs"]),
        int(spec["num_classes"]),
        width=int(spec["width"]),
        depth=int(spec["depth"]),
        dropout=float(spec["dropout"]),
    )


def _text(spec: Spec) -> nn.Module:
    from modelmill.encoder import build_text

    return build_text(spec)


# family name -> builder from a spec; a new model family is one more entry
FAMILIES: dict[str, Callable[[Spec], nn.Module]] = {"convnet": _convnet, "dense": _dense, "text": _text}


def build_from_spec(spec: Spec) -> nn.Module:
    """The module a spec describes (weights freshly initialised; load a state dict into it)."""
    family = spec.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(sorted(FAMILIES))})")
    return FAMILIES[family](spec)


def spec_of(model: nn.Module) -> Spec:
    """The JSON spec a modelmill model was built from."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict):
        raise ValueError(f"{type(model).__name__} carries no modelmill spec")
    return spec


def build_model(image_shape: tuple[int, int], num_classes: int, cfg: ModelConfig) -> nn.Module:
    return ConvNet(tuple(image_shape), num_classes, cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
