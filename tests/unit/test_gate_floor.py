"""gate.min_score: an absolute floor, so a champion cannot slide down by `tolerance` every night."""

from modelmill.config import GateConfig
from modelmill.gate import decide


def test_a_challenger_below_the_floor_is_rejected_even_without_a_champion():
    decision = decide(0.80, None, GateConfig(min_score=0.9))
    assert not decision.promote and "gate.min_score 0.9" in decision.reason


def test_nightly_slides_within_tolerance_stop_at_the_floor():
    cfg, champion, promoted = GateConfig(tolerance=0.005, min_score=0.95), 0.97, []
    for _night in range(10):  # each challenger is just within tolerance of the current champion
        decision = decide(round(champion - 0.004, 4), champion, cfg)
        if decision.promote:
            champion = decision.challenger
        promoted.append(decision.promote)
    assert champion >= 0.95 and promoted[:5] == [True] * 5 and not promoted[-1]


def test_no_floor_by_default():
    assert GateConfig().min_score is None and decide(0.1, None, GateConfig()).promote
