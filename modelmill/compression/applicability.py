"""Which compression methods apply to which model family (modelmill.models), and why the others
do not: the one table the compress stage consults for every data kind."""

from __future__ import annotations

from typing import Any

from modelmill.config import CompressConfig

METHODS = ("dynamic_int8", "static_int8", "prune", "distill")

# family -> method -> why it does not apply (absent: it applies)
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "convnet": {},
    "dense": {},
    "text": {
        "static_int8": "the encoder's attention, LayerNorm and GELU have no static int8 kernels in torch's "
        "FX quantization (dynamic int8 of its linear layers applies)",
        "prune": "unstructured pruning of the pretrained encoder keeps its dense size and latency; "
        "distillation into fewer layers is the size and latency method",
    },
}


def not_applicable(spec: dict[str, Any]) -> dict[str, str]:
    """Method -> why it does not apply to the model of this spec (the family's table, then the
    spec's own limits: a dense network without a hidden layer has nothing to narrow)."""
    family = str(spec.get("family"))
    if family not in NOT_APPLICABLE:
        return {m: f"no compression methods are defined for the {family!r} model family" for m in METHODS}
    reasons = dict(NOT_APPLICABLE[family])
    if family == "dense" and int(spec.get("depth", 0)) == 0:
        reasons["distill"] = "the dense network has no hidden layer (logistic regression): nothing to narrow"
    return reasons


def enabled(cfg: CompressConfig) -> list[str]:
    """The methods the configuration turns on."""
    flags = {"dynamic_int8": cfg.dynamic_int8, "static_int8": cfg.static_int8, "prune": cfg.prune,
             "distill": cfg.distill}  # fmt: skip
    return [m for m in METHODS if flags[m]]


def plan(spec: dict[str, Any], cfg: CompressConfig) -> tuple[list[str], dict[str, str]]:
    """(the methods to run, in order; method -> why it does not run) for this model and config."""
    reasons, on = not_applicable(spec), enabled(cfg)
    skipped = {m: f"off (compress.{m}: false)" for m in METHODS if m not in on}
    skipped |= {m: f"not applicable: {why}" for m, why in reasons.items()}
    return [m for m in on if m not in reasons], skipped
