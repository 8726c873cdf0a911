"""Batch scoring of a file with a loaded model: a CSV/Parquet table, a text file (one input a line)
or a folder of images, read in chunks; each chunk's id, label, class probabilities and the model
version appended to one output file (CSV or Parquet), renamed into place when complete."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelmill.atomic import atomic_path
from modelmill.errors import PredictionInputError
from modelmill.scoring import Scorer, probabilities

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
ID_COLUMNS = ("item_id", "id")


@dataclass(frozen=True)
class Chunk:
    ids: list[str]
    x: np.ndarray  # model inputs


def chunks(scorer: Scorer, source: Path, size: int) -> Iterator[Chunk]:
    """Model inputs of `source` in chunks of `size`, each with the ids of its rows or files."""
    if source.is_dir():
        yield from _image_chunks(scorer, source, size)
    elif source.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        start = 0
        for batch in pq.ParquetFile(source).iter_batches(batch_size=size):
            frame = batch.to_pandas()
            yield _frame_chunk(scorer, frame, start, source)
            start += len(frame)
    elif source.suffix.lower() == ".csv":
        start = 0
        for frame in pd.read_csv(source, chunksize=size):
            yield _frame_chunk(scorer, frame, start, source)
            start += len(frame)
    elif source.suffix.lower() == ".txt":
        yield from _text_chunks(scorer, source, size)
    else:
        raise PredictionInputError(f"{source}: expected a .csv, .parquet or .txt file or a folder of images")


def count_inputs(source: Path) -> int | None:
    """How many inputs `source` holds, where that is cheap to know (for the progress bar)."""
    if source.is_dir():
        return sum(1 for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if source.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(source).metadata.num_rows)
    return None


def _frame_chunk(scorer: Scorer, frame: pd.DataFrame, start: int, source: Path) -> Chunk:
    if scorer.schema is None or scorer.preprocessor is None:
        raise PredictionInputError(f"{source}: this model version stores no preprocessing")
    missing = [c for c in scorer.schema.feature_columns if c not in frame.columns]
    if missing:
        raise PredictionInputError(f"{source}: column '{missing[0]}' is missing ({len(missing)} in all)")
    id_column = next(
        (c for c in (getattr(scorer.schema, "id_column", None), *ID_COLUMNS) if c in frame), None
    )
    ids = frame[id_column].astype(str).tolist() if id_column else [str(start + i) for i in range(len(frame))]
    try:
        x = scorer.preprocessor.transform(frame).numpy()
    except (ValueError, TypeError) as exc:
        raise PredictionInputError(f"{source}: rows {start}-{start + len(frame) - 1}: {exc}") from None
    return Chunk(ids, scorer.checked(list(x.reshape(len(frame), -1)), str(source)))


def _image_chunks(scorer: Scorer, folder: Path, size: int) -> Iterator[Chunk]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PredictionInputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for i in range(0, len(files), size):
        part = files[i : i + size]
        encoded = [base64.b64encode(p.read_bytes()).decode() for p in part]
        try:
            x = scorer.raw_input(encoded)
        except PredictionInputError as exc:
            raise PredictionInputError(f"{folder}: {_name_input(str(exc), part)}") from None
        yield Chunk([p.name for p in part], x)


def _text_chunks(scorer: Scorer, source: Path, size: int) -> Iterator[Chunk]:
    with open(source, encoding="utf-8") as handle:
        lines, start = [], 0
        for line in handle:
            lines.append(line.rstrip("\n"))
            if len(lines) == size:
                yield Chunk([str(start + i) for i in range(len(lines))], scorer.raw_input(lines))
                start, lines = start + len(lines), []
        if lines:
            yield Chunk([str(start + i) for i in range(len(lines))], scorer.raw_input(lines))


def _name_input(message: str, files: list[Path]) -> str:
    """'input 3: ...' -> 'name.png: ...' (the file, not its place in the chunk)."""
    head, _, rest = message.partition(":")
    if head.startswith("input ") and head[6:].isdigit() and int(head[6:]) < len(files):
        return f"{files[int(head[6:])].name}:{rest}"
    return message


def predictions_frame(scorer: Scorer, chunk: Chunk, version: str) -> pd.DataFrame:
    probs = probabilities(scorer.logits(chunk.x))
    frame = pd.DataFrame({"id": chunk.ids, "label": [scorer.classes[i] for i in probs.argmax(axis=1)]})
    for j, name in enumerate(scorer.classes):
        frame[f"p_{name}"] = probs[:, j]
    frame["model_version"] = version
    return frame


def predict_file(
    scorer: Scorer,
    source: Path,
    out: Path,
    version: str,
    chunk_size: int = 10_000,
    on_chunk: Callable[[int], Any] | None = None,
) -> int:
    """Score `source` chunk by chunk into `out` (.csv or .parquet); returns the rows written."""
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise PredictionInputError(f"{out}: the output must be a .csv or .parquet file")
    rows, writer = 0, None
    with atomic_path(out) as tmp:
        try:
            for chunk in chunks(scorer, source, chunk_size):
                frame = predictions_frame(scorer, chunk, version)
                writer = _write(frame, tmp, out.suffix.lower(), writer, first=rows == 0)
                rows += len(frame)
                if on_chunk is not None:
                    on_chunk(len(frame))
        finally:
            if writer is not None:
                writer.close()
    return rows


def _write(frame: pd.DataFrame, tmp: Path, suffix: str, writer: Any, first: bool) -> Any:
    if suffix == ".csv":
        frame.to_csv(tmp, mode="w" if first else "a", header=first, index=False)
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    writer = writer or pq.ParquetWriter(tmp, table.schema)
    writer.write_table(table)
    return writer
