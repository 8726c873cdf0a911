"""Train stage: the challenger, with per-epoch metrics in MLflow and a checkpoint on disk."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from modelmill.models import build_model, count_parameters
from modelmill.training import EpochMetrics, seed_everything, train
from tasks import progress
from tasks.checkpoint import save_checkpoint
from tasks.context import RunContext
from tasks.split import SplitRef


@task(name="train", cache_policy=NO_CACHE)
def train_challenger(ctx: RunContext, splits: SplitRef) -> str:
    """Train a new model on the train split (early stopping on val); returns its checkpoint folder."""
    logger, tracker, cfg = get_run_logger(), ctx.tracker(), ctx.settings
    schema = splits.schema()
    seed_everything(cfg.train.seed)  # before the weights are initialised: same inputs, same model
    model = build_model(schema.image_shape, len(schema.classes), cfg.model)
    tracker.log_params({"model.parameters": count_parameters(model)})
    bar = progress.bar("train", total=cfg.train.epochs, unit="epoch")

    def on_epoch(m: EpochMetrics) -> None:
        tracker.log_metrics(
            {
                "train_loss": m.train_loss,
                "train_accuracy": m.train_accuracy,
                "val_loss": m.val_loss,
                "val_accuracy": m.val_accuracy,
                "epoch_seconds": m.seconds,
                "samples_per_second": m.samples_per_second,
            },
            step=m.epoch,
        )
        logger.info(
            "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_acc %.4f  (%.1fs)",
            m.epoch, cfg.train.epochs, m.train_loss, m.val_loss, m.val_accuracy, m.seconds,
        )  # fmt: skip
        bar.advance(f"val_loss {m.val_loss:.4f}  val_acc {m.val_accuracy:.4f}")

    with tracker.system_metrics(), bar:
        result = train(model, splits.xy("train"), splits.xy("val"), cfg.train, on_epoch=on_epoch)
    tracker.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "train_seconds": result.seconds,
            "train_samples_per_second": result.samples_per_second,
        }
    )
    return save_checkpoint(result.model, Path(ctx.work_dir, "challenger"))
