"""ONNX export of a variant and its parity with PyTorch under onnxruntime."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from modelmill.errors import CompressionError


@dataclass
class OnnxParity:
    size_bytes: int
    max_abs_diff: float  # largest |logit difference| between onnxruntime and torch
    label_agreement: float  # fraction of items with the same predicted class


def export_onnx(module: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    """The TorchScript-based exporter (dynamo=False): it needs no onnxscript, handles the float
    and statically quantized models; dynamic int8 Linear has no ONNX mapping. `example`: one
    input (pixels, features or token ids), the batch dimension left dynamic."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # the tracer's notes on the text encoder's shape arithmetic (constant per traced length)
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
            # a traced (quantized) module's forward has no Python signature to read input names from
            warnings.filterwarnings("ignore", message="no signature found for <torch.ScriptMethod")
            torch.onnx.export(
                traced_if_quantized(module.eval(), torch.zeros_like(example[:1])),
                (torch.zeros_like(example[:1]),),
                buffer,  # type: ignore[arg-type]  # annotated as a path; the TorchScript exporter takes a file too
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as exc:  # the exporter raises several unrelated types for unsupported ops
        raise CompressionError(
            f"ONNX export of {type(module).__name__} failed: {str(exc).splitlines()[0]}"
        ) from exc
    return buffer.getvalue()


def traced_if_quantized(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """A quantized module traced as the exporter would (pytorch#75761), without the exporter's
    trace check: the check's tensor comparison imports torch.distributed.tensor (1.8 s of the
    first export here); onnxruntime's parity (check_parity) is the check that matters."""
    if not any(hasattr(m, "_packed_params") for m in module.modules()):
        return module
    warnings.filterwarnings("ignore", message="The input to trace is already a ScriptModule")
    traced: nn.Module = torch.jit.trace(module, (example,), check_trace=False)
    return traced


def check_parity(onnx_model: bytes, module: nn.Module, x: torch.Tensor) -> OnnxParity:
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.inference_mode():
        torch_logits = module.eval()(x).numpy()
    return OnnxParity(
        len(onnx_model),
        float(np.abs(onnx_logits - torch_logits).max()),
        float((onnx_logits.argmax(1) == torch_logits.argmax(1)).mean()),
    )
