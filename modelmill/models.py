"""Model definitions: a small CNN for single-channel images of any size."""

from __future__ import annotations

import torch
from torch import nn

from modelmill.config import ModelConfig


class ConvNet(nn.Module):
    """`depth` blocks of conv3x3-BN-ReLU (+2x2 max-pool while the map is at least 4 wide),
    then a hidden dense layer with dropout and the class logits."""

    def __init__(self, image_shape: tuple[int, int], num_classes: int, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        channels, (h, w) = 1, image_shape
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


def build_model(image_shape: tuple[int, int], num_classes: int, cfg: ModelConfig) -> nn.Module:
    return ConvNet(tuple(image_shape), num_classes, cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
