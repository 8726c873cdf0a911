"""Training the text kind's model: `frozen` (sentence embeddings computed once per input and cached
by content hash, only the head trains) or `finetune` (every layer, a lower rate for the encoder,
linear warm-up then linear decay), both keeping the epoch with the lowest validation loss."""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modelmill.atomic import atomic_path
from modelmill.config import TextModelConfig, TrainConfig
from modelmill.device import select_device
from modelmill.encoder import TextClassifier
from modelmill.errors import ConfigError
from modelmill.training import (
    Augment,
    EpochMetrics,
    LossFn,
    OnEpoch,
    TrainResult,
    deterministic,
    evaluate_loss,
    past,
    seed_everything,
    torch_threads,
    weights_digest,
)
from modelmill.training import train as train_head

XY = tuple[torch.Tensor, torch.Tensor]
CACHE_FORMAT = "modelmill.embeddings/1"


def train_text(
    model: TextClassifier,
    train_xy: XY,
    val_xy: XY,
    cfg: TrainConfig,
    text: TextModelConfig,
    cache_dir: str | Path | None = None,
    on_epoch: OnEpoch | None = None,
    augment: Augment | None = None,
) -> TrainResult:
    """Train `model` on token ids in the configured mode (model.text.mode); `augment` transforms
    each fine-tuning batch (frozen mode embeds every text once, so it cannot augment)."""
    if text.mode == "frozen":
        if augment is not None:
            raise ConfigError("augment.text needs model.text.mode: finetune (frozen embeds each text once)")
        return train_frozen(model, train_xy, val_xy, cfg, text, cache_dir, on_epoch)
    return finetune(model, train_xy, val_xy, cfg, text, on_epoch, augment=augment)


@torch.no_grad()
def embed(encoder: nn.Module, ids: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Sentence embeddings (N, hidden) of token ids, on the encoder's device, returned on the CPU."""
    encoder.eval()
    device = next(encoder.parameters()).device
    parts = [encoder(ids[s : s + batch_size].to(device)).cpu() for s in range(0, len(ids), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)


def cached_embeddings(
    encoder: nn.Module, ids: torch.Tensor, cache_dir: str | Path | None, batch_size: int, weights: str = ""
) -> torch.Tensor:
    """`embed`, stored once under cache_dir/<sha256 of format, weights and ids>.safetensors."""
    if cache_dir is None:
        return embed(encoder, ids, batch_size)
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(f"{CACHE_FORMAT}:{weights or weights_digest(encoder)}:".encode())
    key.update(str(tuple(ids.shape)).encode())
    key.update(ids.contiguous().numpy().tobytes())
    path = Path(cache_dir, f"{key.hexdigest()[:32]}.safetensors")
    if path.exists():
        return load_file(path)["embeddings"]
    embeddings = embed(encoder, ids, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"embeddings": embeddings.contiguous()}, tmp)
    return embeddings


def train_frozen(
    model: TextClassifier,
    train_xy: XY,
    val_xy: XY,
    cfg: TrainConfig,
    text: TextModelConfig,
    cache_dir: str | Path | None = None,
    on_epoch: OnEpoch | None = None,
) -> TrainResult:
    """Embed train and val once (cached), train only the head on the embeddings (train: settings, at
    model.text.head_learning_rate)."""
    started = time.perf_counter()
    with torch_threads(cfg.num_threads):
        weights = weights_digest(model.encoder)
        train_e = cached_embeddings(model.encoder, train_xy[0], cache_dir, text.embedding_batch_size, weights)
        val_e = cached_embeddings(model.encoder, val_xy[0], cache_dir, text.embedding_batch_size, weights)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    head_cfg = cfg.model_copy(update={"learning_rate": text.head_learning_rate})
    result = train_head(model.head, (train_e, train_xy[1]), (val_e, val_xy[1]), head_cfg, on_epoch=on_epoch)
    model.head = cast(nn.Sequential, result.model)
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    result.model, result.seconds = model.cpu().eval(), time.perf_counter() - started
    return result


def warmup_then_decay(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at `step`: linear from 0 to 1 over `warmup`, then linear to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def finetune(
    model: TextClassifier,
    train_xy: XY,
    val_xy: XY,
    cfg: TrainConfig,
    text: TextModelConfig,
    on_epoch: OnEpoch | None = None,
    loss: LossFn | None = None,
    augment: Augment | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Every layer trains (AdamW): the encoder at encoder_learning_rate, the head at head_learning_rate;
    it stops after train.patience epochs without a val-loss gain and keeps the best epoch. `loss`
    replaces cross-entropy for training (distillation); validation stays on cross-entropy. `deadline`:
    as modelmill.training.train's (the schedule stays the planned epochs')."""
    with torch_threads(cfg.num_threads), deterministic(select_device(cfg.device)) as promise:
        result = _finetune(model, train_xy, val_xy, cfg, text, on_epoch, loss, augment, deadline)
    result.determinism = promise
    return result


def _finetune(
    model: TextClassifier,
    train_xy: XY,
    val_xy: XY,
    cfg: TrainConfig,
    text: TextModelConfig,
    on_epoch: OnEpoch | None,
    loss_of: LossFn | None,
    augment: Augment | None = None,
    deadline: float | None = None,
) -> TrainResult:
    generator = seed_everything(cfg.seed)
    device = select_device(cfg.device)
    model.to(device)
    loader = DataLoader(
        TensorDataset(*train_xy), batch_size=cfg.batch_size, shuffle=True, generator=generator
    )
    optimizer = torch.optim.AdamW(
        [
            {"params": list(model.encoder.parameters()), "lr": text.encoder_learning_rate},
            {"params": list(model.head.parameters()), "lr": text.head_learning_rate},
        ],
        weight_decay=cfg.weight_decay,
    )
    total = text.finetune_epochs * len(loader)
    warmup = int(total * text.warmup_fraction)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_then_decay(s, warmup, total))
    loss_fn, history = nn.CrossEntropyLoss(), []
    best_loss, best_state, best_epoch, started = float("inf"), None, 0, time.perf_counter()
    step = 0
    for epoch in range(1, text.finetune_epochs + 1):
        tick, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        model.train()
        for x_batch, y_batch in loader:
            # augmented on the CPU token ids, seeded by the batch number
            x_cpu, y_cpu = augment(x_batch, y_batch, step) if augment is not None else (x_batch, y_batch)
            step += 1
            x, y = x_cpu.to(device), y_cpu.to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_of(logits, x, y) if loss_of is not None else loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen, loss_sum = seen + len(y), loss_sum + loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum().item())
        elapsed = time.perf_counter() - tick
        val_loss, val_acc = evaluate_loss(model, val_xy, cfg.batch_size * 4, device)
        metrics = EpochMetrics(
            epoch, loss_sum / seen, correct / seen, val_loss, val_acc, elapsed, seen / elapsed
        )
        history.append(metrics)
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(metrics)
        if epoch - best_epoch >= cfg.patience or past(deadline, tick):
            break
    model.load_state_dict(cast(dict[str, Any], best_state))
    seconds, early = time.perf_counter() - started, len(history) < text.finetune_epochs
    return TrainResult(model.cpu().eval(), best_epoch, history, stopped_early=early, seconds=seconds)
