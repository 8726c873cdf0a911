"""Train stage: the challenger, with per-epoch metrics in MLflow and a checkpoint on disk."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from modelmill.augment import augmenter_for, spec_hash, spec_json
from modelmill.config import Settings
from modelmill.kinds import default_model
from modelmill.models import count_parameters
from modelmill.text_training import train_text
from modelmill.training import EpochMetrics, seed_everything, train, weights_digest
from tasks import progress
from tasks.checkpoint import save_checkpoint
from tasks.context import RunContext
from tasks.progress import stage
from tasks.split import SplitRef

EMBEDDINGS_DIR = Path(".modelmill", "cache", "embeddings")  # frozen text encoder: by content hash


def _finetuning(kind: str, cfg: Settings) -> bool:
    return kind == "text" and cfg.model.text.mode == "finetune"


@stage("train")
def train_challenger(ctx: RunContext, splits: SplitRef) -> str:
    """Train a new model on the train split (early stopping on val); returns its checkpoint folder."""
    logger, tracker, cfg = get_run_logger(), ctx.tracker(), ctx.settings
    schema = splits.schema()
    seed_everything(cfg.train.seed)  # before the weights are initialised: same inputs, same model
    model = default_model(schema, cfg.model, splits.preprocessor())  # the kind's model for the schema
    tracker.log_params({"model.parameters": count_parameters(model)})
    pieces = splits.preprocessor().word_pieces() if schema.kind == "text" and cfg.augment.enabled else None
    augment = augmenter_for(
        cfg.augment, schema.kind, cfg.train.seed, num_classes=len(schema.classes), vocabulary=pieces
    )
    if augment is not None:
        tracker.log_text(spec_json(cfg.augment, schema.kind), "augmentation.json")
        tracker.log_params({"augment.hash": spec_hash(cfg.augment, schema.kind)})
    epochs = cfg.model.text.finetune_epochs if _finetuning(schema.kind, cfg) else cfg.train.epochs
    bar = progress.bar("train", total=epochs, unit="epoch")

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
            m.epoch, epochs, m.train_loss, m.val_loss, m.val_accuracy, m.seconds,
        )  # fmt: skip
        bar.advance(f"val_loss {m.val_loss:.4f}  val_acc {m.val_accuracy:.4f}")

    with tracker.system_metrics(), bar:
        if schema.kind == "text":  # the encoder: frozen (cached embeddings, the head trains) or fine-tuned
            cache = Path(ctx.project_dir, EMBEDDINGS_DIR)
            tracker.log_params({"model.text.mode": cfg.model.text.mode})
            result = train_text(model, splits.xy("train"), splits.xy("val"), cfg.train, cfg.model.text,
                                cache_dir=cache, on_epoch=on_epoch, augment=augment)  # fmt: skip
        else:
            result = train(
                model, splits.xy("train"), splits.xy("val"), cfg.train, on_epoch=on_epoch, augment=augment
            )
    tracker.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "train_seconds": result.seconds,
            "train_samples_per_second": result.samples_per_second,
        }
    )
    unit = "texts" if schema.kind == "text" else "samples"
    logger.info("trained in %.1fs: %.1f %s/s", result.seconds, result.samples_per_second, unit)
    # what reproducibility rests on: the same inputs on the same device and thread count give
    # the same weights (tests/flows/test_reproducible_runs.py)
    tracker.set_tags({"deterministic": result.determinism, "weights_sha256": weights_digest(result.model)})
    example, state = splits.xy("val")[0][:1], splits.preprocessor_state()
    return save_checkpoint(result.model, Path(ctx.work_dir, "challenger"), schema, example, state)
