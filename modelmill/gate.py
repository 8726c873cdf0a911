"""The champion/challenger gate: promote only when the challenger is not worse than allowed.

`gate.rule: point` compares two point estimates; `paired_bootstrap` (the default, see GateConfig)
compares both models on the same resampled test items and keeps the champion only when the
challenger is worse beyond the tolerance with confidence."""

from __future__ import annotations

from dataclasses import dataclass, replace

from modelmill.config import GateConfig
from modelmill.evaluation.intervals import PairedComparison


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    rule: str = "point"
    significant: bool | None = None  # paired rule: the difference's interval excludes 0
    champion_version: str | None = None  # the champion compared against (compare-and-set on promotion)


def decide(
    challenger: float,
    champion: float | None,
    cfg: GateConfig,
    paired: PairedComparison | None = None,
    robust_accuracy: float | None = None,
) -> GateDecision:
    """Below gate.min_score (if set): reject. No champion: promote. Else the configured rule
    (point when no paired comparison is given); then the optional robustness floor."""
    if cfg.min_score is not None and challenger < cfg.min_score:
        return GateDecision(
            False,
            f"{cfg.metric} {challenger:.4f} < gate.min_score {cfg.min_score}: champion kept",
            cfg.metric,
            challenger,
            champion,
        )
    if champion is None:
        decision = GateDecision(
            True, "no champion yet: the challenger becomes champion", cfg.metric, challenger, None
        )
    elif cfg.rule == "paired_bootstrap" and paired is not None:
        decision = _paired(paired, cfg)
    else:
        decision = _point(challenger, champion, cfg)
    return _robustness_floor(decision, robust_accuracy, cfg)


def _point(challenger: float, champion: float, cfg: GateConfig) -> GateDecision:
    floor = champion - cfg.tolerance
    promote = challenger >= floor
    relation = ">=" if promote else "<"
    reason = (
        f"{cfg.metric} {challenger:.4f} {relation} champion {champion:.4f} "
        f"- tolerance {cfg.tolerance} = {floor:.4f}"
    )
    return GateDecision(
        promote, reason if promote else reason + ": champion kept", cfg.metric, challenger, champion
    )


def _paired(paired: PairedComparison, cfg: GateConfig) -> GateDecision:
    diff = paired.difference
    promote = diff.high >= -cfg.tolerance
    verdict = "significant" if paired.significant else "not significant"
    reason = (
        f"{cfg.metric} {paired.challenger.point:.4f} vs champion {paired.champion.point:.4f}: "
        f"difference {diff.point:+.4f}, {diff.level:.0%} paired interval [{diff.low:+.4f}, {diff.high:+.4f}] "
        f"({verdict})"
    )
    if not promote:
        reason += f", entirely below -tolerance {cfg.tolerance}: champion kept"
    return GateDecision(
        promote,
        reason,
        cfg.metric,
        paired.challenger.point,
        paired.champion.point,
        rule="paired_bootstrap",
        significant=paired.significant,
    )


def _robustness_floor(decision: GateDecision, robust_accuracy: float | None, cfg: GateConfig) -> GateDecision:
    floor = cfg.min_robust_accuracy
    if floor is None or robust_accuracy is None or robust_accuracy >= floor or not decision.promote:
        return decision
    reason = f"accuracy under attack {robust_accuracy:.4f} < gate.min_robust_accuracy {floor}: champion kept"
    return replace(decision, promote=False, reason=reason)
