"""The champion/challenger gate: promote only when the challenger is not worse than allowed."""

from __future__ import annotations

from dataclasses import dataclass

from modelmill.config import GateConfig


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    champion_version: str | None = None  # the champion compared against (compare-and-set on promotion)


def decide(challenger: float, champion: float | None, cfg: GateConfig) -> GateDecision:
    """Promote when the challenger reaches gate.min_score (if set) and there is no champion, or
    challenger >= champion - tolerance."""
    if cfg.min_score is not None and challenger < cfg.min_score:
        return GateDecision(
            False,
            f"{cfg.metric} {challenger:.4f} < gate.min_score {cfg.min_score}: champion kept",
            cfg.metric,
            challenger,
            champion,
        )
    if champion is None:
        return GateDecision(
            True, "no champion yet: the challenger becomes champion", cfg.metric, challenger, None
        )
    floor = champion - cfg.tolerance
    if challenger >= floor:
        return GateDecision(
            True,
            f"{cfg.metric} {challenger:.4f} >= champion {champion:.4f} "
            f"- tolerance {cfg.tolerance} = {floor:.4f}",
            cfg.metric,
            challenger,
            champion,
        )
    return GateDecision(
        False,
        f"{cfg.metric} {challenger:.4f} < champion {champion:.4f} "
        f"- tolerance {cfg.tolerance} = {floor:.4f}: champion kept",
        cfg.metric,
        challenger,
        champion,
    )
