"""The text kind's explanations and robustness: token attributions (Captum's LayerIntegratedGradients
on the word embeddings) with the three sanity checks every kind gets, rendered as highlighted text;
accuracy under character noise, word drop and Gaussian noise on the embeddings."""

from __future__ import annotations

import html
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelmill.atomic import atomic_write_bytes
from modelmill.augment import augment_texts
from modelmill.config import ExplanationsConfig, RobustnessConfig, TextAugment
from modelmill.evaluation.explanations import (
    ExplanationReport,
    completeness_errors,
    explanation_checks,
    probe_indices,
    reinitialised,
)
from modelmill.evaluation.robustness import RobustnessReport, attack_sanity_checks


@dataclass(frozen=True)
class TextInputs:
    """What the text checks need beyond token ids: the raw test texts (in the order of the test
    tensors), the preprocessor's encoding, the vocabulary and the token that stands for "no word"."""

    texts: list[str]
    encode: Callable[[list[str]], torch.Tensor]  # texts -> token ids, as the preprocessor makes them
    token: Callable[[int], str]  # id -> token, for the rendering
    special_ids: frozenset[int]  # [CLS], [SEP], [PAD]...: never attributed, never removed
    baseline_id: int  # [MASK] (else [UNK]): the baseline and deletion replace words with it


def text_inputs(preprocessor: object, texts: list[str]) -> TextInputs:
    """TextInputs from a fitted modelmill.kinds.text.TextPreprocessor and the raw test texts."""
    from modelmill.kinds.text import TextPreprocessor

    if not isinstance(preprocessor, TextPreprocessor):
        raise TypeError(f"the text checks need a TextPreprocessor, not {type(preprocessor).__name__}")
    tokenizer = preprocessor.tokenizer
    baseline = tokenizer.token_to_id("[MASK]")
    if baseline is None:
        baseline = tokenizer.token_to_id("[UNK]")
    if baseline is None:
        raise ValueError("the tokenizer has neither [MASK] nor [UNK]: no baseline token for the explanations")
    return TextInputs(
        list(texts), preprocessor.transform_texts, lambda i: tokenizer.id_to_token(i) or "?",
        preprocessor.special_ids(), int(baseline),
    )  # fmt: skip


def _embeddings(model: nn.Module) -> nn.Module:
    layer = getattr(getattr(model, "encoder", None), "word_embeddings", None)
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{type(model).__name__} has no encoder.word_embeddings: not a text model")
    return layer


def _content(ids: torch.Tensor, inputs: TextInputs) -> torch.Tensor:
    """Which positions hold words (not [CLS], [SEP] or padding)."""
    special = torch.tensor(sorted(inputs.special_ids), dtype=ids.dtype, device=ids.device)
    return ~torch.isin(ids, special)


def token_attributions(
    model: nn.Module, ids: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, steps: int
) -> torch.Tensor:
    """IG at the word-embedding layer from the baseline ids to `ids`, summed over the hidden units:
    one attribution per token (N, L), zero beyond the batch's longest text."""
    from captum.attr import LayerIntegratedGradients  # type: ignore[import-untyped]

    lig = LayerIntegratedGradients(model, _embeddings(model))
    attr: torch.Tensor = lig.attribute(
        ids, baselines=baseline, target=target, n_steps=steps, internal_batch_size=256
    )
    per_token = attr.sum(-1).detach()
    return nn.functional.pad(per_token, (0, ids.shape[1] - per_token.shape[1]))


def token_saliency(model: nn.Module, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient x embedding per token (N, L): the cheap map the randomisation check compares."""
    from captum.attr import LayerGradientXActivation

    attr: torch.Tensor = LayerGradientXActivation(model, _embeddings(model)).attribute(ids, target=target)
    per_token = attr.sum(-1).detach()
    return nn.functional.pad(per_token, (0, ids.shape[1] - per_token.shape[1]))


@torch.no_grad()
def _target_prob(model: nn.Module, ids: torch.Tensor, target: int) -> torch.Tensor:
    return torch.softmax(model(ids), 1)[:, target]


def _deletion_auc(
    model: nn.Module, ids: torch.Tensor, target: int, order: torch.Tensor, baseline_id: int, steps: int
) -> float:
    """Area under the target probability as the words of one text are replaced in `order`."""
    ks = np.linspace(0, len(order), steps + 1).round().astype(int)
    variants = ids.repeat(len(ks), 1)
    for row, k in enumerate(ks):
        variants[row, order[:k]] = baseline_id
    curve = _target_prob(model, variants, target).cpu().numpy()
    return float(np.trapezoid(curve, dx=1.0 / steps))


def text_deletion_ratio(
    model: nn.Module, ids: torch.Tensor, target: torch.Tensor, attr: torch.Tensor, inputs: TextInputs,
    steps: int, seed: int,
) -> float:  # fmt: skip
    """Mean deletion AUC removing the most-attributed words first over that of a seeded random order."""
    gen, top, rand = torch.Generator().manual_seed(seed), [], []
    content = _content(ids, inputs)
    for i in range(len(ids)):
        positions = content[i].nonzero().squeeze(1)
        if len(positions) == 0:
            continue
        top_first = positions[attr[i, positions].argsort(descending=True)]
        shuffled = positions[torch.randperm(len(positions), generator=gen).to(positions.device)]
        top.append(_deletion_auc(model, ids[i : i + 1], int(target[i]), top_first, inputs.baseline_id, steps))
        rand.append(_deletion_auc(model, ids[i : i + 1], int(target[i]), shuffled, inputs.baseline_id, steps))
    return float(np.mean(top) / max(float(np.mean(rand)), 1e-12)) if top else float("nan")


def _spearman_on_words(a: torch.Tensor, b: torch.Tensor, content: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    values = [
        spearmanr(a[i, content[i]].abs().cpu().numpy(), b[i, content[i]].abs().cpu().numpy()).statistic
        for i in range(len(a))
        if int(content[i].sum()) > 1
    ]
    return float(np.nanmean(values)) if values else float("nan")


def explain_text(
    model: nn.Module,
    ids: torch.Tensor,
    y: torch.Tensor,
    cfg: ExplanationsConfig,
    inputs: TextInputs,
    randomised: nn.Module | None = None,
) -> ExplanationReport:
    """Token IG and gradient x embedding of the predicted class on the probe set, and the three
    sanity checks (completeness, deletion, model randomisation) as for the other kinds."""
    model.eval()
    index = probe_indices(y, cfg.probes_per_class, cfg.seed)
    probes = ids[index].to(next(model.parameters()).device)
    content = _content(probes, inputs)
    baseline = torch.where(content, torch.full_like(probes, inputs.baseline_id), probes)
    with torch.no_grad():
        target = model(probes).argmax(1)
    ig = token_attributions(model, probes, target, baseline, cfg.text_ig_steps)
    errors = completeness_errors(model, probes, target, baseline, ig)
    ratio = text_deletion_ratio(model, probes, target, ig, inputs, cfg.deletion_steps, cfg.seed)
    other = randomised if randomised is not None else reinitialised(model, cfg.seed)
    maps = token_saliency(model, probes, target)
    rho = _spearman_on_words(maps, token_saliency(other, probes, target), content)
    report = ExplanationReport(
        index.tolist(), target.tolist(), errors.tolist(), ratio, rho, ig=ig.cpu(), saliency=maps.cpu()
    )
    report.checks = explanation_checks(report, cfg)
    return report


def render_token_attributions(
    report: ExplanationReport, ids: torch.Tensor, y: torch.Tensor, classes: list[str], inputs: TextInputs,
    path: Path,
) -> Path:  # fmt: skip
    """One HTML page: each probe's words highlighted by their attribution to the predicted class
    (red for, blue against; word pieces joined), with its true and predicted label."""
    assert report.ig is not None
    lines = []
    for row, (item, target) in enumerate(zip(report.probe_index, report.target, strict=True)):
        tokens = ids[item].tolist()
        scores = report.ig[row].tolist()
        limit = max(
            (abs(s) for t, s in zip(tokens, scores, strict=True) if t not in inputs.special_ids), default=0
        )
        spans = []
        for token, score in zip(tokens, scores, strict=True):
            if token in inputs.special_ids:
                continue
            piece = inputs.token(token)
            alpha = abs(score) / limit if limit else 0.0
            colour = f"rgba(220,40,40,{alpha:.2f})" if score >= 0 else f"rgba(40,90,220,{alpha:.2f})"
            text = html.escape(piece[2:] if piece.startswith("##") else " " + piece)
            spans.append(f'<span title="{score:+.4f}" style="background:{colour}">{text}</span>')
        truth, predicted = classes[int(y[item])], classes[target]
        lines.append(f"<p><b>{html.escape(truth)} &rarr; {html.escape(predicted)}</b>:{''.join(spans)}</p>")
    page = (
        "<!doctype html><meta charset='utf-8'><title>token attributions</title>"
        "<body style='font-family:sans-serif;max-width:60em'><h1>Token attributions (Integrated "
        "Gradients on the word embeddings)</h1><p>true &rarr; predicted label; red words push towards "
        "the predicted class, blue against it; hover for the value.</p>" + "\n".join(lines) + "</body>"
    )
    atomic_write_bytes(path, page.encode())
    return path


# --- robustness ------------------------------------------------------------------------------


def char_noise(texts: list[str], rate: float, seed: int) -> list[str]:
    """Each letter or digit, with probability `rate`, deleted, swapped with the next character or
    replaced by a random lower-case letter (seeded: typos, OCR and keyboard slips)."""
    if rate == 0:
        return list(texts)
    rng, out = random.Random(seed), []
    for text in texts:
        chars, i = list(text), 0
        while i < len(chars):
            if chars[i].isalnum() and rng.random() < rate:
                action = rng.randrange(3)
                if action == 0:
                    del chars[i]
                    continue
                if action == 1 and i + 1 < len(chars):
                    chars[i], chars[i + 1] = chars[i + 1], chars[i]
                    i += 1
                else:
                    chars[i] = rng.choice("abcdefghijklmnopqrstuvwxyz")
            i += 1
        out.append("".join(chars))
    return out


def word_drop(texts: list[str], rate: float, seed: int) -> list[str]:
    """Each word dropped with probability `rate` (never every word): augmentation's own word dropout."""
    return list(texts) if rate == 0 else augment_texts(texts, TextAugment(word_dropout=rate), seed)


TEXT_PERTURBATIONS: dict[str, Callable[[list[str], float, int], list[str]]] = {
    "char_noise": char_noise,
    "word_drop": word_drop,
}


@contextmanager
def embedding_noise(model: nn.Module, sigma: float, seed: int) -> Iterator[None]:
    """Gaussian noise on the word embeddings, sigma in units of the batch's embedding std."""
    gen = torch.Generator().manual_seed(seed)

    def add(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(output.shape, generator=gen).to(output)
        return output + sigma * output.detach().std() * noise

    handle = _embeddings(model).register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def _accuracy(model: nn.Module, ids: torch.Tensor, y: torch.Tensor, batch: int = 128) -> float:
    """Accuracy in batches of texts of similar length (the encoder cuts each batch after its
    longest text, so sorted batches do less work; the predictions are put back in order)."""
    device = next(model.parameters()).device
    order = (ids != 0).sum(1).argsort()
    pred = torch.empty(len(ids), dtype=torch.long)
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            rows = order[i : i + batch]
            pred[rows] = model(ids[rows].to(device)).argmax(1).cpu()
    return float((pred == y).float().mean())


def text_robustness(
    model: nn.Module, y: torch.Tensor, cfg: RobustnessConfig, inputs: TextInputs
) -> RobustnessReport:
    """Accuracy on a seeded subset (at most cfg.text_max_items) of the test texts, clean and
    perturbed at each of cfg.text_rates, and under embedding noise at cfg.noise_sigmas; the attack
    checks apply (rate 0 equals clean, accuracy falls with the rate)."""
    model.eval()
    keep, limit = list(range(len(y))), min(cfg.max_items, cfg.text_max_items)
    if len(y) > limit:
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed))[:limit].tolist()
    texts, y = [inputs.texts[i] for i in keep], y[keep]
    ids = inputs.encode(texts)
    clean = _accuracy(model, ids, y)

    def accuracy_on(perturbed: list[str]) -> float:  # the same texts give the same answers
        return clean if perturbed == texts else _accuracy(model, inputs.encode(perturbed), y)

    results = {
        name: {rate: accuracy_on(perturb(texts, rate, cfg.seed)) for rate in cfg.text_rates}
        for name, perturb in TEXT_PERTURBATIONS.items()
    }
    noise = {}
    for sigma in cfg.noise_sigmas:
        with embedding_noise(model, sigma, cfg.seed):
            noise[sigma] = _accuracy(model, ids, y)
    report = RobustnessReport(clean, len(y), results, noise, parameter="rate")
    report.checks = [
        replace(
            c,
            name=c.name.replace("epsilon", "rate").replace("eps0", "rate0"),
            detail=c.detail.replace("eps", "rate"),
        )
        for c in attack_sanity_checks(clean, results, cfg.slack)
    ]
    return report


@torch.no_grad()
def word_occlusion(
    model: nn.Module, ids: torch.Tensor, target: int, positions: torch.Tensor, baseline_id: int
) -> torch.Tensor:
    """Drop in the target logit when each word position alone becomes the baseline token (forward
    passes only, so int8 variants are explained the same way as their float model)."""
    variants = ids.repeat(len(positions), 1)
    variants[torch.arange(len(positions)), positions] = baseline_id
    logits: torch.Tensor = model(torch.cat([ids, variants]))
    return (logits[0, target] - logits[1:, target]).cpu()


def text_explanation_iou(
    reference: nn.Module, variant: nn.Module, ids: torch.Tensor, y: torch.Tensor, cfg: ExplanationsConfig,
    inputs: TextInputs,
) -> float:  # fmt: skip
    """Mean over the probe set of the IoU of the top `cfg.top_fraction` words by word occlusion of
    `variant` with `reference`'s (the reference's predicted class): does compression keep the reasons?"""
    probes = ids[probe_indices(y, cfg.probes_per_class, cfg.seed)]
    reference.eval(), variant.eval()
    scores: list[float] = []
    with torch.no_grad():
        targets = reference(probes).argmax(1).tolist()
    for row, target in zip(probes, targets, strict=True):
        positions = _content(row[None], inputs)[0].nonzero().squeeze(1)
        if len(positions) == 0:
            continue
        a = word_occlusion(reference, row[None], target, positions, inputs.baseline_id).abs()
        b = word_occlusion(variant, row[None], target, positions, inputs.baseline_id).abs()
        k = max(1, int(round(cfg.top_fraction * len(positions))))
        top_a, top_b = set(a.topk(k).indices.tolist()), set(b.topk(k).indices.tolist())
        scores.append(len(top_a & top_b) / len(top_a | top_b))
    return float(np.mean(scores)) if scores else float("nan")
