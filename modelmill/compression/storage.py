"""The stored form of a model variant: architecture + quantization recipe + weights, one file.

Every variant (the float model included) is stored the same way: `torch.save` of a small
package dict, then zlib-compressed. Sizes in the compression table are the lengths of
these bytes, so zeros left by pruning and the int8 weights count as what they cost on disk.
"""

from __future__ import annotations

import copy
import io
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from modelmill.atomic import atomic_write_bytes
from modelmill.config import ModelConfig
from modelmill.errors import CompressionError
from modelmill.models import build_model

FORMAT = "modelmill.compressed-model/1"
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
    package = {
        "format": FORMAT,
        "architecture": arch.to_dict(),
        "recipe": asdict(recipe),
        "state": module.state_dict(),
    }
    buffer = io.BytesIO()
    torch.save(package, buffer)
    return zlib.compress(buffer.getvalue(), 9)


def dense_size(module: nn.Module) -> int:
    """Bytes of a plain, uncompressed torch.save of the state dict (for comparison)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return len(buffer.getbuffer())


def from_bytes(payload: bytes, source: str = "<bytes>") -> tuple[nn.Module, Architecture, Recipe]:
    try:
        package = torch.load(io.BytesIO(zlib.decompress(payload)), weights_only=True)
    except (zlib.error, RuntimeError, EOFError) as exc:
        raise CompressionError(f"{source}: not a modelmill compressed model ({exc})") from None
    if not isinstance(package, dict) or package.get("format") != FORMAT:
        raise CompressionError(f"{source}: format is not {FORMAT}")
    arch, recipe = Architecture.from_dict(package["architecture"]), Recipe(**package["recipe"])
    module = apply_recipe(arch.build(), arch, recipe)
    module.load_state_dict(package["state"])
    return module.eval(), arch, recipe


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


def save(path: str | Path, payload: bytes) -> int:
    """Write stored bytes (Variant.stored() / to_bytes) atomically; returns the size in bytes."""
    atomic_write_bytes(path, payload)
    return Path(path).stat().st_size


def load(path: str | Path) -> nn.Module:
    path = Path(path)
    if not path.exists():
        raise CompressionError(f"{path}: compressed model file not found")
    return from_bytes(path.read_bytes(), source=str(path))[0]
