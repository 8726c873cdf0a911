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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from modelmill.atomic import atomic_write_bytes
from modelmill.config import ModelConfig
from modelmill.errors import CompressionError, UnsafeModelError
from modelmill.models import build_model, spec_of

FORMAT = "modelmill.compressed-model/2"
MAX_INFLATED_BYTES = 1024**3  # a stored variant inflating past this is refused (zlib bomb)
QUANTIZATIONS = (None, "dynamic_int8", "static_int8")


@dataclass(frozen=True)
class Architecture:
    """What build_model needs to rebuild the float module."""

    image_shape: tuple[int, int]
    num_classes: int
    model: ModelConfig

    def build(self) -> nn.Module:
        return build_model(self.image_shape, self.num_classes, self.model).eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "model": self.model.model_dump(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Architecture:
        return cls(
            cast(tuple[int, int], tuple(raw["image_shape"])),
            int(raw["num_classes"]),
            ModelConfig(**raw["model"]),
        )


def architecture_of(model: nn.Module, image_shape: tuple[int, int]) -> Architecture:
    """Read the ModelConfig back from a float ConvNet (a champion loaded from the registry)."""
    features, classifier = cast(nn.Sequential, model.features), cast(nn.Sequential, model.classifier)
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    linears = [m for m in classifier if isinstance(m, nn.Linear)]
    dropouts = [m for m in classifier if isinstance(m, nn.Dropout)]
    if not convs or len(linears) != 2:
        raise CompressionError(f"{type(model).__name__}: not a modelmill ConvNet (conv blocks + 2 linear)")
    cfg = ModelConfig(
        width=convs[0].out_channels,
        depth=len(convs),
        hidden=linears[0].out_features,
        dropout=dropouts[0].p if dropouts else 0.0,
    )
    return Architecture(cast(tuple[int, int], tuple(image_shape)), linears[1].out_features, cfg)


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
        "spec": _spec_or_arch(module, arch),
        "architecture": arch.to_dict(),
        "recipe": asdict(recipe),
        "layout": layout,
    }
    return tensors, meta


def _spec_or_arch(module: nn.Module, arch: Architecture) -> dict[str, Any]:
    try:
        return spec_of(module)
    except ValueError:  # quantized modules (FX GraphModules) do not keep the attribute
        return spec_of(arch.build())


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
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        use_backend(recipe.backend)
        example = (torch.zeros(1, 1, *arch.image_shape),)
        prepared = prepare_fx(module, get_default_qconfig_mapping(recipe.backend), example)
        with torch.no_grad():
            for batch in calibration or []:
                prepared(batch)
        return convert_fx(prepared)
    return module


def use_backend(backend: str) -> None:
    if backend not in torch.backends.quantized.supported_engines:
        raise CompressionError(
            f"compress.backend: '{backend}' is not supported by this torch build "
            f"(supported: {', '.join(torch.backends.quantized.supported_engines)})"
        )
    if torch.backends.quantized.engine != backend:
        torch.backends.quantized.engine = backend


def save_folder(
    folder: str | Path,
    module: nn.Module,
    arch: Architecture,
    recipe: Recipe,
    classes: list[str],
    extra_files: dict[str, bytes] | None = None,
) -> None:
    """The variant as a safe model folder (modelmill.modelfile): what the registry holds; extra
    files (its ONNX export, model.onnx) sit beside the weights, covered by the same manifest."""
    from modelmill import modelfile

    tensors, meta = package(module, arch, recipe)
    meta.update(
        kind="image",
        classes=[str(c) for c in classes],
        preprocessing=None,
        input={"shape": [-1, 1, *arch.image_shape], "dtype": "float32"},
        output="logits",
    )
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
