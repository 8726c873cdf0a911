"""The stored form of a model variant: architecture + quantization recipe + weights, one file.

Every variant (the float model included) is stored the same way: safetensors (int8 weights as
their integer representation, quantization parameters as tensors + a JSON layout; the
architecture and recipe in the header's metadata), then zlib-compressed. Sizes in the
compression table are the lengths of these bytes, so zeros left by pruning and the int8
weights count as what they cost on disk. Nothing is pickled; loading never unpickles.
"""

from __future__ import annotations

import copy
import io
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from modelmill.atomic import atomic_write_bytes
from modelmill.config import ModelConfig
from modelmill.errors import CompressionError, UnsafeModelError
from modelmill.models import build_from_spec, spec_of

FORMAT = "modelmill.compressed-model/2"
MAX_INFLATED_BYTES = 1024**3  # a stored variant inflating past this is refused (zlib bomb)
QUANTIZATIONS = (None, "dynamic_int8", "static_int8")


@dataclass(frozen=True)
class Architecture:
    """The model's spec (modelmill.models: family + constructor arguments): what rebuilds the float
    module before a recipe is applied, for every model family."""

    spec: dict[str, Any]

    @property
    def family(self) -> str:
        return str(self.spec.get("family"))

    @property
    def num_classes(self) -> int:
        return int(self.spec["num_classes"])

    @property
    def image_shape(self) -> tuple[int, int]:
        return cast(tuple[int, int], tuple(self.spec["image_shape"]))

    def example_input(self) -> torch.Tensor:
        """One input of the shape the family takes (FX tracing, ONNX export); token ids have no
        fixed length, so the text family has none."""
        if self.family == "convnet":
            return torch.zeros(1, int(self.spec.get("channels", 1)), *self.image_shape)
        if self.family == "dense":
            return torch.zeros(1, int(self.spec["inputs"]))
        raise CompressionError(f"the {self.family} family has no fixed-shape example input")

    def build(self) -> nn.Module:
        return build_from_spec(self.spec).eval()

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Architecture:
        if "spec" in raw:
            return cls(dict(raw["spec"]))
        # modelmill.compressed-model/2 before specs: a grey ConvNet by image shape and ModelConfig
        config = ModelConfig(**raw["model"]).model_dump(mode="json", exclude={"tabular", "text"})
        shape, classes = list(raw["image_shape"]), int(raw["num_classes"])
        return cls(
            {
                "family": "convnet",
                "image_shape": shape,
                "num_classes": classes,
                "channels": 1,
                "config": config,
            }
        )


def architecture_of(model: nn.Module) -> Architecture:
    """The architecture of a float modelmill model (a champion loaded from the registry)."""
    try:
        return Architecture(dict(spec_of(model)))
    except ValueError as exc:
        raise CompressionError(f"{type(model).__name__}: not a modelmill model ({exc})") from None


@dataclass(frozen=True)
class Recipe:
    """How to turn the rebuilt float module into the stored one before loading weights."""

    quantization: str | None = None
    backend: str = "x86"


def to_bytes(module: nn.Module, arch: Architecture, recipe: Recipe) -> bytes:
    from safetensors.torch import save as dump_safetensors

    tensors, meta = package(module, arch, recipe)
    return zlib.compress(dump_safetensors(tensors, metadata={"modelmill": json.dumps(meta)}), 9)


def package(
    module: nn.Module, arch: Architecture, recipe: Recipe
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Plain tensors + the JSON that rebuilds the variant (modelmill.modelfile's `meta`)."""
    tensors, layout = encode_state(module.state_dict())
    meta = {
        "format": FORMAT,
        "spec": arch.spec,
        "architecture": arch.to_dict(),
        "recipe": asdict(recipe),
        "layout": layout,
    }
    return tensors, meta


def dense_size(module: nn.Module) -> int:
    """Bytes of a plain, uncompressed safetensors file of the state (for comparison)."""
    from safetensors.torch import save as dump_safetensors

    return len(dump_safetensors(encode_state(module.state_dict())[0]))


def from_bytes(
    payload: bytes, source: str = "<bytes>", max_bytes: int = MAX_INFLATED_BYTES
) -> tuple[nn.Module, Architecture, Recipe]:
    """Inflate (bounded), check the safetensors header, rebuild; never unpickles."""
    from safetensors.torch import load as load_safetensors

    from modelmill.modelfile import Limits, parse_safetensors_header

    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, max_bytes)
    except zlib.error as exc:
        raise CompressionError(f"{source}: not a modelmill compressed model ({exc})") from None
    if inflater.unconsumed_tail:
        raise UnsafeModelError(f"{source}: inflates past {max_bytes} bytes (refused as a zlib bomb)")
    header = parse_safetensors_header(io.BytesIO(raw), len(raw), source, Limits())
    try:
        meta = json.loads(header["__metadata__"]["modelmill"])
    except (KeyError, TypeError, ValueError):
        raise CompressionError(f"{source}: format is not {FORMAT}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CompressionError(f"{source}: format is not {FORMAT}")
    module = rebuild(meta, load_safetensors(raw), source)
    return module, Architecture.from_dict(meta["architecture"]), Recipe(**meta["recipe"])


def rebuild(meta: dict[str, Any], tensors: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The variant a package describes: float module, recipe applied, decoded state loaded."""
    try:
        arch, recipe = Architecture.from_dict(meta["architecture"]), Recipe(**meta["recipe"])
        module = apply_recipe(arch.build(), arch, recipe)
        module.load_state_dict(decode_state(tensors, meta["layout"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UnsafeModelError(f"{source}: the stored variant does not rebuild ({exc})") from None
    return module.eval()


# --- state dicts with quantized entries as plain tensors + JSON ----------------------------


def encode_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors safetensors can hold + a JSON layout: quantized tensors as int8/uint8/int32 with
    their scale(s) and zero point(s), packed params as tuples, dtypes by name."""
    tensors: dict[str, torch.Tensor] = {}
    entries = {key: _encode(key, value, tensors) for key, value in state.items()}
    # per-module state versions: quantized modules read their state by version
    versions = {k: dict(v) for k, v in getattr(state, "_metadata", {}).items()}
    return tensors, {"entries": entries, "versions": versions}


def _encode(key: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).split(".")[-1]}
    if isinstance(value, (tuple, list)):
        return {"tuple": [_encode(f"{key}.{i}", v, tensors) for i, v in enumerate(value)]}
    if not isinstance(value, torch.Tensor):
        raise CompressionError(f"state entry {key!r}: {type(value).__name__} cannot be stored safely")
    value = value.detach()
    if not value.is_quantized:
        tensors[key] = value.contiguous()
        return {"tensor": key}
    tensors[key] = value.int_repr().contiguous()
    if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return {"qtensor": key, "scale": float(value.q_scale()), "zero_point": int(value.q_zero_point())}
    tensors[f"{key}.scales"] = value.q_per_channel_scales().contiguous()
    tensors[f"{key}.zero_points"] = value.q_per_channel_zero_points().contiguous()
    return {"qtensor": key, "axis": int(value.q_per_channel_axis())}


def decode_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict[str, Any]:
    from collections import OrderedDict

    state = OrderedDict((key, _decode(entry, tensors)) for key, entry in layout["entries"].items())
    state._metadata = OrderedDict((k, dict(v)) for k, v in layout["versions"].items())  # type: ignore[attr-defined]
    return state


_QDTYPES = {"qint8": torch.qint8, "quint8": torch.quint8, "qint32": torch.qint32, "float16": torch.float16}


def _decode(entry: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if entry is None:
        return None
    if "dtype" in entry:
        return _QDTYPES[entry["dtype"]]
    if "tuple" in entry:
        return tuple(_decode(e, tensors) for e in entry["tuple"])
    if "tensor" in entry:
        return tensors[entry["tensor"]]
    key = entry["qtensor"]
    if "axis" in entry:
        return torch._make_per_channel_quantized_tensor(
            tensors[key], tensors[f"{key}.scales"], tensors[f"{key}.zero_points"], int(entry["axis"])
        )
    return torch._make_per_tensor_quantized_tensor(
        tensors[key], float(entry["scale"]), int(entry["zero_point"])
    )


def apply_recipe(
    module: nn.Module, arch: Architecture, recipe: Recipe, calibration: list[torch.Tensor] | None = None
) -> nn.Module:
    """The float module turned into the recipe's form (quantized modules, fused layers)."""
    if recipe.quantization not in QUANTIZATIONS:
        raise CompressionError(f"recipe.quantization: unknown '{recipe.quantization}'")
    module = copy.deepcopy(module).cpu().eval()
    if recipe.quantization == "dynamic_int8":
        return cast(nn.Module, torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8))
    if recipe.quantization == "static_int8":
        return static_quantized(module, arch, recipe.backend, calibration or [])
    return module


def static_quantized(
    module: nn.Module, arch: Architecture, backend: str, calibration: list[torch.Tensor]
) -> nn.Module:
    """FX graph mode static int8 (fused where the backend fuses), observers run on `calibration`;
    a model FX cannot trace or convert is a CompressionError saying why."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    use_backend(backend)
    example = (arch.example_input(),)
    try:
        with fx_without_stack_traces():
            prepared = prepare_fx(module, get_default_qconfig_mapping(backend), example)
        with torch.no_grad():
            for batch in calibration:
                prepared(batch)
        return convert_fx(prepared)
    except Exception as exc:  # FX raises several unrelated types for untraceable or unmapped ops
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CompressionError(f"static int8 of the {arch.family} model failed: {first}") from exc


@contextmanager
def fx_without_stack_traces() -> Iterator[None]:
    """FX tracing without a stack trace per graph node: recording the first one imports
    torch._dynamo and torch._inductor (3 s of the first static int8 here); the traces only
    annotate the graph for debugging."""
    import torch.fx.config

    before = torch.fx.config.do_not_emit_stack_traces
    torch.fx.config.do_not_emit_stack_traces = True
    try:
        yield
    finally:
        torch.fx.config.do_not_emit_stack_traces = before


def use_backend(backend: str) -> None:
    if backend not in torch.backends.quantized.supported_engines:
        raise CompressionError(
            f"compress.backend: '{backend}' is not supported by this torch build "
            f"(supported: {', '.join(torch.backends.quantized.supported_engines)})"
        )
    if torch.backends.quantized.engine != backend:
        torch.backends.quantized.engine = backend


# what a variant's model.json keeps of its source model's: the input it takes and how raw inputs
# become that input (the kind, its fitted preprocessor and tokenizer, the dataset schema)
SOURCE_META = ("kind", "preprocessing", "schema", "input")


def save_folder(
    folder: str | Path,
    module: nn.Module,
    arch: Architecture,
    recipe: Recipe,
    classes: list[str],
    source_meta: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> None:
    """The variant as a safe model folder (modelmill.modelfile): what the registry holds. With the
    source model's `meta` (its model.json), the variant takes the same raw inputs as its source;
    extra files (its ONNX export, model.onnx) sit beside the weights, covered by the same manifest."""
    from modelmill import modelfile

    tensors, meta = package(module, arch, recipe)
    source = {k: v for k, v in (source_meta or {}).items() if k in SOURCE_META}
    if "input" not in source:
        source["input"] = {"shape": [-1, *arch.example_input().shape[1:]], "dtype": "float32"}
    meta.update({"kind": "image", "preprocessing": None, **source, "classes": [str(c) for c in classes]})
    meta["output"] = "logits"
    meta.pop("format")
    modelfile.write(folder, tensors, meta, extra_files)


def save(path: str | Path, payload: bytes) -> int:
    """Write stored bytes (Variant.stored() / to_bytes) atomically; returns the size in bytes."""
    atomic_write_bytes(path, payload)
    return Path(path).stat().st_size


def load(path: str | Path) -> nn.Module:
    path = Path(path)
    if not path.exists():
        raise CompressionError(f"{path}: compressed model file not found")
    return from_bytes(path.read_bytes(), source=str(path))[0]
