"""Fine-tuning and distillation on a seeded random subset of the training split when the time budget
affords less than the epochs they need (validation on a seeded sample no larger than the subset)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

XY = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Subset:
    """The items a fine-tune or a student trains and validates on (`items` of `of` training items)."""

    train: XY
    val: XY
    items: int
    of: int

    @property
    def whole(self) -> bool:
        return self.items == self.of

    def setting(self) -> str:
        """The variant's setting (table, tracker): '12000 of 60000 items'."""
        return f"{self.items} of {self.of} items"

    def note(self, verb: str) -> str:
        """The variant's line in the summary: 'fine-tuned on 12,000 of 60,000 items'."""
        return f"{verb} on {self.items:,} of {self.of:,} training items (validated on {len(self.val[1]):,})"


def sample(xy: XY, count: int, seed: int) -> XY:
    """`count` items of `xy` drawn without replacement by a generator seeded with `seed`, in split
    order (the same seed and count: the same items); all of them when count >= len."""
    total = len(xy[1])
    if count >= total:
        return xy
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return xy[0][chosen], xy[1][chosen]


def subset_of(train_xy: XY, val_xy: XY, items: int, val_items: int, seed: int) -> Subset:
    """`items` training items and `val_items` validation items (all when fewer), seeded samples."""
    train = sample(train_xy, items, seed)
    return Subset(train, sample(val_xy, val_items, seed + 1), len(train[1]), len(train_xy[1]))
