"""A small separable table and a dense teacher trained on it, for the compression stage's tests."""

import torch
from torch import nn

from modelmill.config import TrainConfig
from modelmill.models import DenseNet
from modelmill.training import seed_everything, train


def separable_table() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Two informative of six standardised columns, three classes: 600 train, 150 val, 150 test rows."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(900, 6, generator=generator)
    y = (x[:, 0] > 0.4).long() + (x[:, 1] > 0).long()
    return {"train": (x[:600], y[:600]), "val": (x[600:750], y[600:750]), "test": (x[750:], y[750:])}


def dense_teacher(splits: dict[str, tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig) -> nn.Module:
    """A 2-layer DenseNet of width 32 trained on `splits`, its initial weights seeded (cfg.seed)."""
    seed_everything(cfg.seed)
    return train(DenseNet(6, 3, width=32, depth=2, dropout=0.0), splits["train"], splits["val"], cfg).model
