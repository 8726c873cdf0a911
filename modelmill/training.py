"""The training loop: one readable function, seeded, with early stopping on validation loss."""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modelmill.config import TrainConfig
from modelmill.device import select_device


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    samples_per_second: float


@dataclass
class TrainResult:
    model: nn.Module
    best_epoch: int
    history: list[EpochMetrics] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    determinism: str = ""

    @property
    def best(self) -> EpochMetrics:
        return self.history[self.best_epoch - 1]

    @property
    def samples_per_second(self) -> float:
        return sum(e.samples_per_second * e.seconds for e in self.history) / max(self.seconds, 1e-9)


OnEpoch = Callable[[EpochMetrics], None]
# (logits, x, y) -> scalar training loss; the default is cross-entropy (distillation adds a teacher)
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (x, y, batch number) -> augmented (x, y), training batches only (modelmill.augment.BatchAugmenter);
# y may come back as (N, C) class probabilities (mixup)
Augment = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init, dropout) and return the generator of the data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def deterministic(device: torch.device) -> Iterator[str]:
    """torch's deterministic kernels inside the block (the training loop), the caller's setting
    after; yields what a run can promise, for its tags.

    CPU with a fixed thread count gives bit-identical weights from the same inputs. On CUDA,
    cuBLAS needs CUBLAS_WORKSPACE_CONFIG before its first call (set here when the user has not)
    and cuDNN its deterministic algorithms; an op with no deterministic kernel warns instead of
    failing the run (warn_only), so CUDA runs say "best effort". Only the loop: quantized ops
    (compression) have no deterministic kernels and torch's C++ warning would reach the output."""
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        if device.type == "cpu":
            yield f"true: cpu, {torch.get_num_threads()} threads"
        else:
            yield f"best effort: {device.type} (an op without a deterministic kernel only warns)"
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def weights_digest(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes in order): equal iff the weights are."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{flat.dtype}|{tuple(flat.shape)}|".encode())
        digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def train(
    model: nn.Module,
    train_xy: tuple[torch.Tensor, torch.Tensor],
    val_xy: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    on_epoch: OnEpoch | None = None,
    loss: LossFn | None = None,
    augment: Augment | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Train `model` on train_xy, keep the weights of the epoch with the lowest val loss.

    `on_epoch` is called after each epoch (log to a tracker, report to a tuner; raising
    from it, e.g. optuna.TrialPruned, stops training). `loss` replaces the training loss
    (validation and best-epoch selection stay on cross-entropy). `augment` transforms each
    training batch on the CPU, seeded by its batch number, before it goes to the device.
    `deadline` (a time.perf_counter reading): no epoch is started that the last one's duration
    says would end past it (the first always runs; compression's time budget).
    """
    with torch_threads(cfg.num_threads), deterministic(select_device(cfg.device)) as promise:
        result = _fit(model, train_xy, val_xy, cfg, on_epoch, loss, augment, deadline)
    result.determinism = promise
    return result


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """`count` intra-op threads inside the block (None: as they are), the process's own after:
    a tuning trial run in the caller's process must not leave the final training on 1 thread."""
    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(
    model: nn.Module,
    train_xy: tuple[torch.Tensor, torch.Tensor],
    val_xy: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    on_epoch: OnEpoch | None,
    loss: LossFn | None,
    augment: Augment | None = None,
    deadline: float | None = None,
) -> TrainResult:
    generator = seed_everything(cfg.seed)
    device = select_device(cfg.device)
    model.to(device)
    loader = DataLoader(
        TensorDataset(*train_xy), batch_size=cfg.batch_size, shuffle=True, generator=generator
    )
    optimizer, loss_fn = make_optimizer(model, cfg), nn.CrossEntropyLoss()
    best_loss, best_state, best_epoch, history = float("inf"), None, 0, []
    started, step = time.perf_counter(), 0
    for epoch in range(1, cfg.epochs + 1):
        tick, model = time.perf_counter(), model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for x_batch, y_batch in loader:
            x, y = augment(x_batch, y_batch, step) if augment is not None else (x_batch, y_batch)
            step += 1
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            batch_loss = loss(logits, x, y) if loss is not None else loss_fn(logits, y)
            batch_loss.backward()
            optimizer.step()
            seen += len(y)
            loss_sum += batch_loss.item() * len(y)
            correct += (logits.argmax(1) == (y if y.ndim == 1 else y.argmax(1))).sum().item()
        elapsed = time.perf_counter() - tick
        val_loss, val_acc = evaluate_loss(model, val_xy, cfg.batch_size * 4, device)
        metrics = EpochMetrics(
            epoch, loss_sum / seen, correct / seen, val_loss, val_acc, elapsed, seen / max(elapsed, 1e-9)
        )
        history.append(metrics)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(metrics)
        if epoch - best_epoch >= cfg.patience or past(deadline, tick):
            break
    model.load_state_dict(cast(dict[str, Any], best_state))  # set at epoch 1 unless val_loss is NaN
    return TrainResult(
        model.cpu().eval(),
        best_epoch,
        history,
        stopped_early=len(history) < cfg.epochs,
        seconds=time.perf_counter() - started,
    )


def past(deadline: float | None, epoch_started: float) -> bool:
    """Whether another epoch as long as the one started at `epoch_started` would end past `deadline`."""
    if deadline is None:
        return False
    now = time.perf_counter()
    return now + (now - epoch_started) > deadline


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, xy: tuple[torch.Tensor, torch.Tensor], batch_size: int, device: torch.device
) -> tuple[float, float]:
    model.eval()
    loss_fn, total, correct = nn.CrossEntropyLoss(reduction="sum"), 0.0, 0
    x_all, y_all = xy
    for start in range(0, len(y_all), batch_size):
        x = x_all[start : start + batch_size].to(device)
        y = y_all[start : start + batch_size].to(device)
        logits = model(x)
        total += loss_fn(logits, y).item()
        correct += (logits.argmax(1) == y).sum().item()
    return total / len(y_all), correct / len(y_all)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class probabilities for x, computed on the model's device, returned on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        torch.softmax(model(x[s : s + batch_size].to(device)), dim=1).cpu()
        for s in range(0, len(x), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0)
