"""Train task: the challenger, with per-epoch metrics in MLflow and the model folder on disk."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from modelmill import modelfile
from modelmill.models import build_model, count_parameters
from modelmill.training import EpochMetrics, train
from tasks.context import RunContext
from tasks.splits import load_splits


@task(name="train", cache_policy=NO_CACHE)
def train_challenger(ctx: RunContext, data_version: str) -> str:
    """Train a new model on the train split (early stopping on val); returns the checkpoint path."""
    logger, tracker, cfg = get_run_logger(), ctx.tracker(), ctx.settings
    dataset, labeled, xy = load_splits(ctx)
    tracker.log_dataset(
        labeled,
        name=dataset.schema.name,
        digest=data_version,
        context="training",
        source=str(ctx.data_dir.resolve()),
    )
    model = build_model(dataset.schema.image_shape, len(dataset.schema.classes), cfg.model)
    tracker.log_params(
        {f"split.{k}_rows": len(v[1]) for k, v in xy.items()} | {"model.parameters": count_parameters(model)}
    )

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
            m.epoch,
            cfg.train.epochs,
            m.train_loss,
            m.val_loss,
            m.val_accuracy,
            m.seconds,
        )

    with tracker.system_metrics():
        result = train(model, xy["train"], xy["val"], cfg.train, on_epoch=on_epoch)
    tracker.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "train_seconds": result.seconds,
            "train_samples_per_second": result.samples_per_second,
        }
    )
    checkpoint = Path(ctx.work_dir, "challenger")  # the safe model folder (modelmill.modelfile)
    modelfile.save(
        checkpoint,
        result.model,
        classes=list(dataset.schema.classes),
        input_example=xy["test"][0][:4],
        kind=getattr(dataset.schema, "kind", "image"),
    )
    return str(checkpoint)
