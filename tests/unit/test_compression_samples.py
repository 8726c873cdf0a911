"""The compress stage's measurement on samples (issue 11): token ids predicted in batches sorted by
length (labels in the split's order), a test split that fits the largest latency batch predicted by
one timed call on it (its first latency sample), latency batches a fixed sample of the test split."""

import torch
import torch.nn.functional as F
from torch import nn

from modelmill.compression.measure import batch_of, interleaved_latency_ms, predicted_labels, split_labels
from modelmill.compression.methods import Variant
from modelmill.compression.storage import architecture_of
from modelmill.config import Settings
from modelmill.models import DenseNet


class LengthClass(nn.Module):
    """Token ids -> the class (its length mod 3): wrong labels if the order got mixed up."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(ids))
        return F.one_hot((ids != 0).sum(1) % 3, 3).float()


def cfg(**update):
    base = {"compress.latency_batch_sizes": [1, 64], "compress.serving_batch_size": 64}
    return Settings().override({**base, **{f"compress.{k}": v for k, v in update.items()}}).compress


def dense_variant() -> Variant:
    torch.manual_seed(0)
    model = DenseNet(6, 3, width=8, depth=1, dropout=0.0).eval()
    return Variant("float", "none", model, architecture_of(model))


def test_token_ids_are_predicted_by_length_and_returned_in_the_split_order():
    generator = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 30, (150,), generator=generator)
    ids = torch.where(torch.arange(30)[None] < lengths[:, None], 7, 0)  # right-padded
    module = LengthClass()
    labels = predicted_labels(Variant("t", "none", module, None), ids, cfg())  # type: ignore[arg-type]
    assert torch.equal(labels, lengths % 3)
    assert module.sizes == [64, 64, 22]  # batches of similar length, not one of 150


def test_a_small_test_split_is_predicted_by_the_timed_latency_batch():
    variant, x = dense_variant(), torch.randn(50, 6, generator=torch.Generator().manual_seed(2))
    samples: dict[int, list[float]] = {}
    labels = split_labels(variant, x, cfg(), samples)
    assert torch.equal(labels, predicted_labels(variant, x, cfg()))
    assert list(samples) == [64] and len(samples[64]) == 1  # the call on the 64-item batch
    assert torch.equal(batch_of(x, 64)[:50], x)  # which holds the split, cycled
    big = torch.randn(100, 6)
    assert split_labels(variant, big, cfg(), samples := {}).shape == (100,) and samples == {}


def test_a_measured_call_is_the_warm_up_and_a_long_one_the_first_round():
    module = LengthClass()
    ids = torch.ones(40, 5, dtype=torch.long)
    timing = cfg(latency_repeats=2, latency_seconds=60.0)
    interleaved_latency_ms([module], ids, timing)
    assert module.sizes.count(64) == 3  # a warm-up and two rounds
    module.sizes.clear()
    (latency,) = interleaved_latency_ms([module], ids, timing, first=[{64: [600.0]}])
    assert module.sizes.count(64) == 1 and module.sizes.count(1) == 3  # 600 ms counted as round 1
    assert latency[64] > 250.0  # the median of 600 ms and the one timed call


def test_latency_batches_are_a_fixed_sample_of_a_larger_split():
    x = torch.arange(1000.0)[:, None]
    first, again = batch_of(x, 256), batch_of(x, 256)
    assert torch.equal(first, again) and len(first.unique()) == 256
    assert not torch.equal(first, x[:256])  # drawn from the whole split, not its first items
