"""Accuracy under FGSM and PGD (L-infinity, in the input's own scale) and under Gaussian noise,
with the sanity checks that catch a broken attack: epsilon 0 equals clean, PGD <= FGSM, accuracy
falls with epsilon. Bounds per data kind live in KIND_BOUNDS (a new kind is one entry)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from modelmill.config import RobustnessConfig
from modelmill.evaluation.sanity import SanityCheck

Bound = float | torch.Tensor
Bounds = tuple[Bound, Bound] | None
# (model, x, y, epsilon, bounds, cfg) -> adversarial x
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, Bounds, RobustnessConfig], torch.Tensor]


def _image_bounds(reference: torch.Tensor) -> Bounds:
    return (0.0, 1.0)  # modelmill's image tensors are pixels scaled to [0, 1]


def _tabular_bounds(reference: torch.Tensor) -> Bounds:
    return (reference.min(0).values, reference.max(0).values)  # per preprocessed feature, as seen in train


# data kind -> the valid input range, from reference (training) inputs
KIND_BOUNDS: dict[str, Callable[[torch.Tensor], Bounds]] = {
    "image": _image_bounds,
    "tabular": _tabular_bounds,
}


def _clip(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    return x if bounds is None else torch.max(torch.min(x, _as(bounds[1], x)), _as(bounds[0], x))


def _as(bound: Bound, x: torch.Tensor) -> torch.Tensor:
    return bound.to(x) if isinstance(bound, torch.Tensor) else torch.tensor(bound, dtype=x.dtype)


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, bounds: Bounds, cfg: RobustnessConfig
) -> torch.Tensor:
    """One signed-gradient step of size eps."""
    return _clip(x + eps * _loss_grad(model, x, y).sign(), bounds).detach()


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, bounds: Bounds, cfg: RobustnessConfig
) -> torch.Tensor:
    """`cfg.pgd_steps` signed steps of pgd_step_factor * eps / steps from x, each projected back
    into the eps ball and the bounds (no random start: deterministic, and eps 0 is exactly clean)."""
    step, adv = cfg.pgd_step_factor * eps / cfg.pgd_steps, x.clone()
    for _ in range(cfg.pgd_steps):
        adv = adv + step * _loss_grad(model, adv, y).sign()
        adv = _clip(torch.max(torch.min(adv, x + eps), x - eps), bounds).detach()
    return adv


ATTACKS: dict[str, Attack] = {"fgsm": fgsm, "pgd": pgd}


@dataclass
class RobustnessReport:
    clean: float
    n: int
    attacks: dict[str, dict[float, float]]  # attack -> epsilon -> accuracy
    noise: dict[float, float]  # sigma -> accuracy
    checks: list[SanityCheck] = field(default_factory=list)
    parameter: str = "eps"  # what the attacks' keys are (texts: the perturbation "rate")

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def strongest(self) -> float:
        """Accuracy under the strongest configured attack: PGD at the largest epsilon, or (texts,
        whose perturbations are not gradient attacks) the worst perturbation at its largest rate."""
        if "pgd" in self.attacks or not self.attacks:
            pgd_acc = self.attacks.get("pgd") or {0.0: self.clean}
            return pgd_acc[max(pgd_acc)]
        return min(by_eps[max(by_eps)] for by_eps in self.attacks.values() if by_eps)

    def metrics(self) -> dict[str, float]:
        out = {"robust_clean_accuracy": self.clean}
        for name, by_eps in self.attacks.items():
            out.update({f"robust_{name}_{self.parameter}_{eps:g}": acc for eps, acc in by_eps.items()})
        out.update({f"robust_noise_sigma_{s:g}": acc for s, acc in self.noise.items()})
        out.update({f"robust_check_{c.name}": float(c.passed) for c in self.checks})
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "clean": self.clean,
            "n": self.n,
            "attacks": {k: {str(e): a for e, a in v.items()} for k, v in self.attacks.items()},
            "noise": {str(s): a for s, a in self.noise.items()},
            "parameter": self.parameter,
            "checks": [c.as_dict() for c in self.checks],
        }


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def evaluate_robustness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: RobustnessConfig,
    bounds: Bounds,
    attacks: Mapping[str, Attack] | None = None,
) -> RobustnessReport:
    """Accuracy of `model` (eval mode, its device) on a seeded subset of at most cfg.max_items."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    if len(y) > cfg.max_items:
        keep = torch.randperm(len(y), generator=gen)[: cfg.max_items]
        x, y = x[keep], y[keep]
    x, y = x.to(device), y.to(device)
    clean = _accuracy(model, x, y)
    results = {
        name: {eps: _accuracy(model, attack(model, x, y, eps, bounds, cfg), y) for eps in cfg.epsilons}
        for name, attack in (attacks or ATTACKS).items()
    }
    noise = {
        s: _accuracy(model, _clip(x + s * torch.randn(x.shape, generator=gen).to(x), bounds), y)
        for s in cfg.noise_sigmas
    }
    report = RobustnessReport(clean, len(y), results, noise)
    report.checks = attack_sanity_checks(clean, results, cfg.slack)
    return report


def attack_sanity_checks(
    clean: float, results: dict[str, dict[float, float]], slack: float
) -> list[SanityCheck]:
    """The checks a correct attack passes and a broken one (epsilon ignored, wrong sign) fails."""
    checks = []
    for name, by_eps in results.items():
        if 0.0 in by_eps:
            gap = abs(by_eps[0.0] - clean)
            detail = f"|accuracy at eps 0 - clean| = {gap:.4f}"
            checks.append(SanityCheck(f"{name}_eps0_equals_clean", gap == 0.0, gap, 0.0, detail))
        if any(e > 0 for e in by_eps):
            checks.append(_falls_with_epsilon(name, clean, by_eps, slack))
    if "fgsm" in results and "pgd" in results:
        common = sorted(set(results["fgsm"]) & set(results["pgd"]))
        excess = max((results["pgd"][e] - results["fgsm"][e] for e in common), default=0.0)
        detail = f"max over epsilons of accuracy(PGD) - accuracy(FGSM) = {excess:+.4f}"
        checks.append(SanityCheck("pgd_at_most_fgsm", excess <= slack, excess, slack, detail))
    return checks


def _falls_with_epsilon(name: str, clean: float, by_eps: dict[float, float], slack: float) -> SanityCheck:
    """Never rises by more than slack from one epsilon to the next, and falls by more than slack from
    the smallest epsilon to the largest (from clean when only one is configured): an attack that
    ignores epsilon gives a flat line."""
    eps = sorted(by_eps)
    rise = max((by_eps[b] - by_eps[a] for a, b in zip(eps, eps[1:], strict=False)), default=0.0)
    start = by_eps[eps[0]] if len(eps) > 1 else clean
    drop = start - by_eps[eps[-1]]
    detail = (
        f"largest rise between epsilons {rise:+.4f}; accuracy at eps {eps[0] if len(eps) > 1 else 0:g} "
        f"- at eps {eps[-1]:g} = {drop:.4f}"
    )
    return SanityCheck(f"{name}_falls_with_epsilon", rise <= slack and drop > slack, drop, slack, detail)
