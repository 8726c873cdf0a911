"""Split stage: the labeled items by a hash of their id into train / val / test tensors, stored
once per (data version, split settings) in a content-addressed folder that the later stages of
the run (train, evaluate, compress) read by path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from prefect import get_run_logger
from pydantic import BaseModel

from modelmill.atomic import fsync_dir
from modelmill.data import fit_splits, load_dataset
from modelmill.kinds import Preprocessor, Schema, preprocessor_from_state, schema_from_json
from modelmill.split import SPLITS, split_frame
from tasks.context import RunContext
from tasks.progress import stage

SPLITS_DIR = Path(".modelmill", "cache", "splits")
FORMAT = "modelmill.splits/2"  # bump when the stored layout or the tensors' meaning changes
SCHEMA_FILE = "dataset.json"
PREPROCESSOR_FILE = "preprocessor.json"  # the kind's preprocessor, fitted on the train split
TEST_ROWS_FILE = "test.parquet"  # the raw test rows, for a champion with its own preprocessor


class SplitRef(BaseModel):
    """Where a run's split tensors are: a folder of `<split>.safetensors` (x, y) + the schema."""

    path: str
    key: str
    data_version: str
    rows: dict[str, int]

    def xy(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        from safetensors.torch import load_file

        tensors = load_file(Path(self.path, f"{name}.safetensors"))
        return tensors["x"], tensors["y"]

    def all_xy(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {name: self.xy(name) for name in SPLITS}

    def schema(self) -> Schema:
        return schema_from_json(Path(self.path, SCHEMA_FILE).read_text(), where=self.path)

    def preprocessor_state(self) -> dict:
        """The fitted preprocessor's JSON state (plain lists and floats): stored with the model."""
        return json.loads(Path(self.path, PREPROCESSOR_FILE).read_text())

    def preprocessor(self) -> Preprocessor:
        return preprocessor_from_state(self.preprocessor_state())

    def test_rows(self):
        """The raw labeled test rows (item columns + label), before preprocessing."""
        import pandas as pd

        return pd.read_parquet(Path(self.path, TEST_ROWS_FILE))


def split_key(data_version: str, ctx: RunContext) -> str:
    payload = {"format": FORMAT, "data_version": data_version, "split": ctx.settings.split.model_dump()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@stage("split")
def split_data(ctx: RunContext, data_version: str) -> SplitRef:
    """Train / val / test by item-id hash (adding data never moves an item between them)."""
    logger = get_run_logger()
    key = split_key(data_version, ctx)
    folder = Path(ctx.project_dir, SPLITS_DIR, key)
    if not (folder / "rows.json").exists():
        write_splits(ctx.data_dir, ctx, folder)
    rows = json.loads((folder / "rows.json").read_text())
    ref = SplitRef(path=str(folder), key=key, data_version=data_version, rows=rows)
    tracker = ctx.tracker()
    tracker.log_params({f"split.{name}_rows": n for name, n in rows.items()})
    state = ref.preprocessor_state()
    tracker.log_dict(state, f"preprocessing/{PREPROCESSOR_FILE}")
    tracker.log_params(
        {"preprocess.kind": state["kind"], "preprocess.inputs": int(ref.xy("val")[0][0].numel())}
    )
    logger.info("split %s: %s", key, ", ".join(f"{n} {name}" for name, n in rows.items()))
    logger.info("preprocess (%s): fitted on the %d train rows", state["kind"], rows["train"])
    return ref


def write_splits(data_dir: Path, ctx: RunContext, folder: Path) -> None:
    """Write the split folder whole: built in a temp folder beside it, renamed into place last
    (rows.json, written last inside it, marks it complete)."""
    from safetensors.torch import save_file

    dataset = load_dataset(data_dir)
    parts = split_frame(dataset.labeled(), ctx.settings.split)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        preprocessor, xy = fit_splits(parts, dataset.schema)  # statistics of the train split only
        for name, (x, y) in xy.items():
            save_file({"x": x.contiguous(), "y": y}, tmp / f"{name}.safetensors")
        (tmp / PREPROCESSOR_FILE).write_text(json.dumps(preprocessor.state(), sort_keys=True))
        parts["test"].to_parquet(tmp / TEST_ROWS_FILE, index=False)
        (tmp / SCHEMA_FILE).write_text(dataset.schema.to_json())
        (tmp / "rows.json").write_text(json.dumps({name: len(f) for name, f in parts.items()}))
        if not folder.exists():  # else another run of the same key finished first: same content
            os.replace(tmp, folder)
            fsync_dir(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
