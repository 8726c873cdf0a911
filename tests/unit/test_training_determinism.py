"""Deterministic kernels are on inside the training loop only: the caller's setting comes back
(quantized compression ops have no deterministic kernel and would warn into a run's output)."""

import torch

from modelmill.training import deterministic


def test_deterministic_is_scoped_to_the_block_and_says_what_it_promises():
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic(torch.device("cpu")) as promise:
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert promise == f"true: cpu, {torch.get_num_threads()} threads"
    assert not torch.are_deterministic_algorithms_enabled()
