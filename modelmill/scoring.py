"""Scoring a loaded model: MLflow scoring-protocol payloads and each kind's raw inputs decoded and
checked against the model's input signature, logits to labels and probabilities, the smoke check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from modelmill.errors import PredictionInputError, ServingError, UnsafeModelError
from modelmill.kinds import Preprocessor, Schema, kind_module, preprocessor_from_state
from modelmill.modelfile import LoadedModel

ONNX_FILE = "model.onnx"  # a compressed variant's ONNX export, beside its safetensors (tasks/compress.py)
TORCH, STORED_ONNX, EXPORTED_ONNX = "torch", "onnxruntime (model.onnx)", "onnxruntime (exported at load)"
EXPORT_PARITY = 1e-5  # largest |onnxruntime - torch| logit difference an export at load may show

# the four input fields of MLflow's scoring protocol (mlflow.pyfunc.scoring_server)
PROTOCOL_FIELDS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass(frozen=True)
class Scorer:
    """One loaded model, ready to answer: model inputs (the signature's shape) -> logits."""

    module: torch.nn.Module
    classes: tuple[str, ...]
    kind: str
    input_shape: tuple[int, ...]  # one input, without the batch dimension
    preprocessor: Preprocessor | None
    schema: Schema | None
    max_batch: int = 10_000
    input_dtype: str = "float32"  # int64: token ids (the text kind)
    session: Any = None  # an onnxruntime InferenceSession (else: the torch module answers)
    runtime: str = TORCH  # TORCH, STORED_ONNX or EXPORTED_ONNX

    @property
    def width(self) -> int:
        return math.prod(self.input_shape)

    def logits(self, x: np.ndarray) -> np.ndarray:
        if self.session is not None:
            feed = {self.session.get_inputs()[0].name: x.reshape(-1, *self.input_shape)}
            logits: np.ndarray = self.session.run(None, feed)[0]
            return logits
        with torch.inference_mode():
            out: np.ndarray = self.module(torch.from_numpy(x).reshape(-1, *self.input_shape)).numpy()
        return out

    def model_input(self, payload: Any) -> np.ndarray:
        """An MLflow scoring-protocol body -> rows of the signature's shape and dtype."""
        field, value = protocol_field(payload)
        if field == "dataframe_split":
            rows = dataframe_split_rows(value, self.width)
        elif field == "dataframe_records":
            rows = dataframe_records_rows(value)
        else:
            rows = value
        return self.checked(rows, field)

    def checked(self, rows: list[Any] | np.ndarray, field: str) -> np.ndarray:
        """Rows as a (n, *input_shape) array of the input dtype; PredictionInputError names the field/row."""
        if not isinstance(rows, (list, np.ndarray)) or not len(rows):
            raise PredictionInputError(f"{field}: expected a non-empty list of inputs")
        if len(rows) > self.max_batch:
            raise PredictionInputError(
                f"{field}: {len(rows)} inputs, more than the limit of {self.max_batch}"
            )
        try:
            x = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError):
            x = None
        if x is not None and self.input_dtype == "int64":
            if x.size == len(rows) * self.width and not (np.isfinite(x).all() and (x == np.round(x)).all()):
                raise PredictionInputError(f"{field}: token ids must be integers")
            x = x.astype(np.int64)
        if x is None or x.ndim < 1 or x.size != len(rows) * self.width:
            raise PredictionInputError(_first_bad_row(rows, field, self.width, self.input_shape))
        if x.dtype == np.float32 and not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x.reshape(len(rows), -1)))[0][0])
            raise PredictionInputError(f"{field}[{row}]: a value is not a finite number")
        return np.ascontiguousarray(x.reshape(len(rows), *self.input_shape))

    def raw_input(self, inputs: Any) -> np.ndarray:
        """The kind's raw inputs (rows as objects, strings, images) -> model input rows."""
        return self.model_rows(self.raw_frame(inputs))

    def model_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """A frame of the schema's feature columns (raw_frame's) -> model input rows."""
        assert self.preprocessor is not None  # raw_frame refused a model without one
        x = self.preprocessor.transform(frame).numpy()
        return self.checked(x.reshape(len(frame), -1), "inputs")

    def raw_frame(self, inputs: Any) -> pd.DataFrame:
        """The kind's raw inputs decoded and checked into a frame of the schema's feature columns."""
        if self.schema is None or self.preprocessor is None:
            raise PredictionInputError("inputs: this model version stores no preprocessing; use /invocations")
        if not isinstance(inputs, list) or not inputs:
            raise PredictionInputError("inputs: expected a non-empty list")
        if len(inputs) > self.max_batch:
            raise PredictionInputError(
                f"inputs: {len(inputs)} inputs, more than the limit of {self.max_batch}"
            )
        frame: pd.DataFrame = kind_module(self.kind).parse_raw(inputs, self.schema)
        return frame

    def answers(self, logits: np.ndarray) -> list[dict[str, Any]]:
        """Per input: the label and the probability of every class."""
        probs = probabilities(logits)
        best = probs.argmax(axis=1)
        return [
            {
                "label": self.classes[int(b)],
                "probabilities": dict(zip(self.classes, map(float, p), strict=True)),
            }
            for b, p in zip(best, probs, strict=True)
        ]


def scorer_of(loaded: LoadedModel, max_batch: int = 10_000, export_onnx: bool = True) -> Scorer:
    """A Scorer for a verified, loaded model folder (its spec, classes, input and preprocessing).

    Through ONNX Runtime when the folder holds a verified model.onnx (a compressed variant's); a
    float model with float inputs is exported to ONNX at load (`export_onnx`) and kept only when
    onnxruntime gives torch's logits on random inputs (EXPORT_PARITY); anything else: torch."""
    meta = loaded.meta
    shape = tuple(int(d) for d in (meta.get("input") or {}).get("shape", [-1])[1:])
    kind = str(meta.get("kind") or "image")
    state = meta.get("preprocessing")
    preprocessor = preprocessor_from_state(state) if isinstance(state, dict) else None
    schema = schema_of(meta, kind, loaded.classes)
    dtype = "int64" if (meta.get("input") or {}).get("dtype") == "int64" else "float32"
    session, runtime = onnx_session(loaded), STORED_ONNX
    if session is None and export_onnx and dtype == "float32" and not meta.get("recipe"):
        session, runtime = exported_session(loaded.module, shape), EXPORTED_ONNX
    runtime = TORCH if session is None else runtime
    classes = tuple(loaded.classes)
    return Scorer(
        loaded.module, classes, kind, shape, preprocessor, schema, max_batch, dtype, session, runtime
    )


def cpu_session(onnx_model: bytes, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def exported_session(module: torch.nn.Module, input_shape: tuple[int, ...], threads: int = 1) -> Any:
    """An onnxruntime session of the module (TorchScript-based exporter), or None when it does not
    export or its logits differ from torch's by more than EXPORT_PARITY."""
    import io
    import warnings

    example = torch.zeros(1, *input_shape)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=17,  # type: ignore[arg-type]
                              input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
        session = cpu_session(buffer.getvalue(), threads)
        probe = torch.rand(8, *input_shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = module(probe).numpy()
        got = session.run(None, {"x": probe.numpy()})[0]
    except Exception:  # noqa: BLE001 - the exporter raises many unrelated types: torch serves instead
        return None
    if got.shape != expected.shape or float(np.abs(got - expected).max()) > EXPORT_PARITY:
        return None
    return session


def onnx_session(loaded: LoadedModel, threads: int = 1) -> Any:
    """An onnxruntime session of the folder's model.onnx, or None when it has none. The bytes read
    are checked against the (verified) manifest again: what was hashed is what runs."""
    if ONNX_FILE not in loaded.manifest.files:
        return None
    import hashlib

    payload = (loaded.folder / ONNX_FILE).read_bytes()
    if hashlib.sha256(payload).hexdigest() != loaded.manifest.files[ONNX_FILE][0]:
        raise UnsafeModelError(f"{loaded.folder}: {ONNX_FILE}: sha256 does not match the manifest")
    try:
        return cpu_session(payload, threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated types
        raise ServingError(f"{loaded.folder}: {ONNX_FILE}: not loadable by onnxruntime ({exc})") from None


def schema_of(meta: dict[str, Any], kind: str, classes: list[str]) -> Schema | None:
    """The dataset schema the model was trained on: stored in model.json, or (older versions) the one
    inside the image preprocessor's state, or a tabular one rebuilt from the preprocessor's columns."""
    raw = meta.get("schema")
    state = meta.get("preprocessing") or {}
    if raw is None and isinstance(state.get("schema"), dict):
        raw = state["schema"]
    if raw is None and kind == "tabular" and "numeric" in state:
        numeric = [{"name": n, "type": "numeric"} for n in state["numeric"]]
        categorical = [{"name": c["name"], "type": "categorical", "categories": c["categories"]}
                       for c in state["categorical"]]  # fmt: skip
        raw = {"name": "model", "classes": classes, "columns": numeric + categorical}
    if not isinstance(raw, dict):
        return None
    body = {k: v for k, v in raw.items() if k not in ("schema_version", "kind")}
    schema: Schema = kind_module(kind).schema_from_dict(body)
    return schema


def protocol_field(payload: Any) -> tuple[str, Any]:
    """The one scoring-protocol field of a request body (`params` may sit beside it)."""
    if not isinstance(payload, dict):
        raise PredictionInputError("body: expected a JSON object with one of " + ", ".join(PROTOCOL_FIELDS))
    present = [f for f in PROTOCOL_FIELDS if f in payload]
    if len(present) != 1:
        raise PredictionInputError(
            "body: expected exactly one of " + ", ".join(PROTOCOL_FIELDS) + f", got {sorted(payload)}"
        )
    value = payload[present[0]]
    if present[0] == "inputs" and isinstance(value, dict):  # named tensors: one tensor only
        if len(value) != 1:
            raise PredictionInputError(f"inputs: expected one named tensor, got {sorted(value)}")
        value = next(iter(value.values()))
    return present[0], value


def dataframe_split_rows(value: Any, width: int) -> Any:
    if not isinstance(value, dict) or "data" not in value:
        raise PredictionInputError("dataframe_split: expected an object with 'data' (and 'columns')")
    columns = value.get("columns")
    if columns is not None and (not isinstance(columns, list) or len(columns) != width):
        got = len(columns) if isinstance(columns, list) else type(columns).__name__
        raise PredictionInputError(f"dataframe_split.columns: expected {width} columns, got {got}")
    return value["data"]


def dataframe_records_rows(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise PredictionInputError("dataframe_records: expected a list of row objects")
    rows = []
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise PredictionInputError(f"dataframe_records[{i}]: expected an object of column values")
        if i and list(record) != list(value[0]):
            raise PredictionInputError(f"dataframe_records[{i}]: columns differ from row 0")
        rows.append(list(record.values()))
    return rows


def _first_bad_row(rows: list[Any] | np.ndarray, field: str, width: int, shape: tuple[int, ...]) -> str:
    for i, row in enumerate(rows):
        try:
            size = np.asarray(row, dtype=np.float32).size
        except (ValueError, TypeError):
            return f"{field}[{i}]: not an array of numbers (expected {width} values, shape {list(shape)})"
        if size != width:
            return f"{field}[{i}]: expected {width} values (shape {list(shape)}), got {size}"
    return f"{field}: expected rows of {width} values (shape {list(shape)})"


def probabilities(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def smoke_check(
    scorer: Scorer, example: np.ndarray, expected: np.ndarray | None, where: str, tolerance: float = 1e-4
) -> None:
    """The stored input example must give the stored outputs within `tolerance` (or, with none
    stored, finite logits of one column per class); ServingError names the version and what differed."""
    logits = scorer.logits(np.ascontiguousarray(example, dtype=scorer.input_dtype))
    if logits.shape != (len(example), len(scorer.classes)) or not np.isfinite(logits).all():
        raise ServingError(f"{where}: smoke check: the input example gives logits of shape {logits.shape}")
    if expected is None:
        return
    if expected.shape != logits.shape or not np.allclose(logits, expected, rtol=1e-4, atol=tolerance):
        worst = float(np.abs(logits - expected).max()) if expected.shape == logits.shape else math.inf
        raise ServingError(
            f"{where}: smoke check: the input example does not give the stored outputs (max diff {worst:.3g})"
        )
