"""A named sanity check with its figure: robustness and explanations report their checks as these."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SanityCheck:
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def failed_names(checks: list[SanityCheck]) -> list[str]:
    return [c.name for c in checks if not c.passed]
