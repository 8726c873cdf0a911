"""Explanations with Captum on a fixed, seeded probe set, and their sanity checks as numbers:
IG completeness, the deletion test, the model-randomisation check; top-k overlap between models.

Baselines and renderings per data kind live in KIND_BASELINES (a new kind is one entry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from modelmill.config import ExplanationsConfig
from modelmill.evaluation.sanity import SanityCheck

# data kind -> the "absence of signal" input the attributions are measured from
KIND_BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "image": torch.zeros_like,  # black: no ink on modelmill's [0, 1] pixels
    "tabular": torch.zeros_like,  # the training mean of standardised features
}


@dataclass
class ExplanationReport:
    probe_index: list[int]
    target: list[int]
    completeness_errors: list[float]
    deletion_ratio: float
    randomisation_spearman: float
    checks: list[SanityCheck] = field(default_factory=list)
    ig: torch.Tensor | None = None  # (probes, *input) attributions, kept for plots and IoU
    saliency: torch.Tensor | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def metrics(self) -> dict[str, float]:
        errors = np.asarray(self.completeness_errors)
        return {
            "explain_completeness_error_median": float(np.median(errors)),
            "explain_completeness_error_max": float(errors.max()),
            "explain_deletion_auc_ratio": self.deletion_ratio,
            "explain_randomisation_spearman": self.randomisation_spearman,
            **{f"explain_check_{c.name}": float(c.passed) for c in self.checks},
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "probe_index": self.probe_index,
            "target": self.target,
            "completeness_errors": self.completeness_errors,
            "deletion_auc_ratio": self.deletion_ratio,
            "randomisation_spearman": self.randomisation_spearman,
            "checks": [c.as_dict() for c in self.checks],
        }


def probe_indices(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` items of each class present in y, chosen by a seeded permutation (sorted)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    picked: list[int] = []
    for cls in torch.unique(y).tolist():
        picked += order[y[order] == cls][:per_class].tolist()
    return torch.tensor(sorted(picked), dtype=torch.long)


def integrated_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, steps: int
) -> torch.Tensor:
    from captum.attr import IntegratedGradients  # type: ignore[import-untyped]

    attr: torch.Tensor = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=steps
    )
    return attr.detach()


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum.attr import Saliency

    maps: torch.Tensor = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    return maps.detach()


@torch.no_grad()
def _target_logit(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits: torch.Tensor = model(x)
    return logits.gather(1, target[:, None]).squeeze(1)


def completeness_errors(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, ig: torch.Tensor
) -> torch.Tensor:
    """|sum of attributions - (f(x) - f(baseline))| / |f(x) - f(baseline)| per probe (target logit)."""
    gap = _target_logit(model, x, target) - _target_logit(model, baseline, target)
    return (ig.flatten(1).sum(1) - gap).abs() / gap.abs().clamp_min(1e-12)


@torch.no_grad()
def _deletion_auc(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    baseline: torch.Tensor,
    order: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Area under target probability as features are set to the baseline in `order` (per probe)."""
    n_probes, n_features = order.shape
    curve = []
    flat_x, flat_b = x.flatten(1), baseline.flatten(1)
    for k in np.linspace(0, n_features, steps + 1).round().astype(int):
        removed = torch.zeros_like(flat_x, dtype=torch.bool)
        removed.scatter_(1, order[:, :k], True)
        probs = torch.softmax(model(torch.where(removed, flat_b, flat_x).view_as(x)), 1)
        curve.append(probs.gather(1, target[:, None]).squeeze(1))
    return torch.from_numpy(np.trapezoid(torch.stack(curve, 1).cpu().numpy(), dx=1.0 / steps, axis=1))


def deletion_ratio(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    baseline: torch.Tensor,
    attr: torch.Tensor,
    steps: int,
    seed: int,
) -> float:
    """Mean deletion AUC removing the most-attributed features first over that of a seeded random
    order: well below 1 when the attributions point at what the model uses."""
    top_first = attr.flatten(1).argsort(1, descending=True)
    gen = torch.Generator().manual_seed(seed)
    random = torch.stack([torch.randperm(top_first.shape[1], generator=gen) for _ in range(len(x))])
    random = random.to(top_first.device)
    top = _deletion_auc(model, x, target, baseline, top_first, steps).mean()
    rand = _deletion_auc(model, x, target, baseline, random, steps).mean()
    return float(top / rand.clamp_min(1e-12))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over probes of the Spearman rank correlation of two attribution maps (absolute values)."""
    from scipy.stats import spearmanr

    pairs = zip(a.flatten(1).abs().cpu().numpy(), b.flatten(1).abs().cpu().numpy(), strict=True)
    values = [spearmanr(u, v).statistic for u, v in pairs]
    return float(np.nanmean(values)) if values else float("nan")


def top_fraction_iou(a: torch.Tensor, b: torch.Tensor, fraction: float) -> float:
    """Mean over probes of the IoU of the top `fraction` features by |attribution| of two models."""
    flat_a, flat_b = a.flatten(1).abs(), b.flatten(1).abs()
    k = max(1, int(round(fraction * flat_a.shape[1])))
    top_a = torch.zeros_like(flat_a, dtype=torch.bool).scatter_(1, flat_a.topk(k, 1).indices, True)
    top_b = torch.zeros_like(flat_b, dtype=torch.bool).scatter_(1, flat_b.topk(k, 1).indices, True)
    inter, union = (top_a & top_b).sum(1).float(), (top_a | top_b).sum(1).float()
    return float((inter / union).mean())


def reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` with freshly initialised weights (seeded; the global RNG is left as it was)."""
    from modelmill.models import build_from_spec, spec_of

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_from_spec(spec_of(model))
    return fresh.to(next(model.parameters()).device).eval()


def explain(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: ExplanationsConfig,
    kind: str = "image",
    randomised: nn.Module | None = None,
) -> ExplanationReport:
    """IG and saliency of the predicted class on the probe set of (x, y), and the three sanity checks;
    `randomised` is the model compared in the randomisation check (default: `reinitialised(model)`)."""
    model.eval()
    index = probe_indices(y, cfg.probes_per_class, cfg.seed)
    probes = x[index].to(next(model.parameters()).device)
    with torch.no_grad():
        target = model(probes).argmax(1)
    baseline = KIND_BASELINES[kind](probes)
    ig = integrated_gradients(model, probes, target, baseline, cfg.ig_steps)
    errors = completeness_errors(model, probes, target, baseline, ig)
    ratio = deletion_ratio(model, probes, target, baseline, ig, cfg.deletion_steps, cfg.seed)
    other = randomised if randomised is not None else reinitialised(model, cfg.seed)
    maps = saliency(model, probes, target)
    rho = spearman(maps, saliency(other, probes, target))
    report = ExplanationReport(
        index.tolist(), target.tolist(), errors.tolist(), ratio, rho, ig=ig.cpu(), saliency=maps.cpu()
    )
    report.checks = explanation_checks(report, cfg)
    return report


def explanation_checks(report: ExplanationReport, cfg: ExplanationsConfig) -> list[SanityCheck]:
    errors = np.asarray(report.completeness_errors)
    share = float((errors <= cfg.completeness_tolerance).mean())
    return [
        SanityCheck(
            "ig_completeness",
            share >= cfg.completeness_share,
            share,
            cfg.completeness_share,
            f"{share:.0%} of {len(errors)} probes within {cfg.completeness_tolerance} "
            f"(median {np.median(errors):.4f})",
        ),
        SanityCheck(
            "deletion",
            report.deletion_ratio <= cfg.deletion_max_ratio,
            report.deletion_ratio,
            cfg.deletion_max_ratio,
            f"AUC removing top-attributed first / random order = {report.deletion_ratio:.3f}",
        ),
        SanityCheck(
            "model_randomisation",
            report.randomisation_spearman <= cfg.randomisation_max_spearman,
            report.randomisation_spearman,
            cfg.randomisation_max_spearman,
            "Spearman(saliency of the trained model, of a re-initialised one) = "
            f"{report.randomisation_spearman:.3f}",
        ),
    ]


def _tile(data: np.ndarray, cmap: str, signed: bool, scale: int) -> np.ndarray:
    """One map as an RGB tile: colour-mapped (signed maps centred on 0), upscaled by `scale`."""
    from matplotlib import colormaps

    limit = float(np.abs(data).max()) or 1.0
    unit = (data / limit + 1) / 2 if signed else (data - data.min()) / ((data.max() - data.min()) or 1.0)
    rgb = colormaps[cmap](unit)[..., :3]
    return np.kron(rgb, np.ones((scale, scale, 1)))


def plot_attributions(report: ExplanationReport, x: torch.Tensor, path: str, rows: int = 10) -> str:
    """Image grid as one PNG (no figure layout: milliseconds): a row per probe, one per predicted
    class first; columns input (grey), IG (blue negative, red positive), saliency (hot)."""
    from matplotlib.image import imsave

    assert report.ig is not None and report.saliency is not None
    first = [report.target.index(t) for t in dict.fromkeys(report.target)]
    shown = list(dict.fromkeys(first + list(range(len(report.target)))))[:rows]
    scale = max(1, 64 // max(x.shape[-2:]))
    lines = []
    for i in shown:
        maps = [x[report.probe_index[i]], report.ig[i], report.saliency[i]]
        planes = [m.detach().float().mean(0).numpy() for m in maps]  # channels averaged
        tiles = [
            _tile(planes[0], "gray", False, scale),
            _tile(planes[1], "bwr", True, scale),
            _tile(planes[2], "hot", False, scale),
        ]
        gap = np.ones((tiles[0].shape[0], 2, 3))
        lines.append(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], 1))
        lines.append(np.ones((2, lines[-1].shape[1], 3)))
    imsave(path, np.concatenate(lines[:-1], 0))
    return path


def occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Drop in the target logit when each feature alone is set to 0 (forward passes only, so
    quantized variants without autograd are explained the same way as their float model)."""
    from captum.attr import Occlusion

    window = (1,) * (x.dim() - 1)
    attr: torch.Tensor = Occlusion(model).attribute(x, sliding_window_shapes=window, target=target)
    return attr.detach()


def explanation_iou(
    reference: nn.Module, variant: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ExplanationsConfig
) -> float:
    """IoU of the top `cfg.top_fraction` occlusion attributions of `variant` with `reference`'s on
    the probe set (the reference's predicted class): does compression keep the reasons?"""
    probes = x[probe_indices(y, cfg.probes_per_class, cfg.seed)]
    with torch.no_grad():
        target = reference.eval()(probes).argmax(1)
    a, b = occlusion(reference, probes, target), occlusion(variant.eval(), probes, target)
    return top_fraction_iou(a, b, cfg.top_fraction)
