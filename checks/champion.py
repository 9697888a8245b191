"""Champion vs challenger: the new model must be no worse than what is live, within a margin.

Both scores must come from the same evaluation set; this gate compares numbers and cannot check
that, so the caller records the dataset digest in the version's lineage.
"""

from __future__ import annotations

import time

from checks._inputs import finite_or_none
from checks.result import GateResult
from registry.errors import InvalidInput


def champion_gate(
    challenger_score: float,
    champion_score: float | None,
    margin: float,
    *,
    metric: str = "score",
    higher_is_better: bool = True,
    name: str = "champion",
) -> GateResult:
    """Pass when the challenger is within ``margin`` of the champion, or better.

    With ``higher_is_better`` the rule is ``challenger >= champion - margin``; otherwise
    ``challenger <= champion + margin``. A negative margin demands a strict improvement of at
    least ``-margin``. ``champion_score=None`` (nothing in production) passes and says so.

    Refuses with ``InvalidInput``: a missing, NaN or infinite challenger score, a NaN or
    infinite champion score, a non-finite margin.
    """
    start = time.perf_counter()
    challenger = finite_or_none(challenger_score, "challenger_score")
    if challenger is None:
        raise InvalidInput("challenger_score is required", field="challenger_score")
    champion = finite_or_none(champion_score, "champion_score")
    m = finite_or_none(margin, "margin")
    if m is None:
        raise InvalidInput("margin is required", field="margin")
    direction = "higher" if higher_is_better else "lower"

    if champion is None:
        return GateResult(
            name=name,
            passed=True,
            metric=metric,
            value=challenger,
            threshold=None,
            details={"champion": None, "margin": m, "better": direction, "no_champion": True},
            duration=time.perf_counter() - start,
            message=f"no champion in production: challenger {metric} = {challenger:.6g} passes",
        )

    threshold = champion - m if higher_is_better else champion + m
    passed = challenger >= threshold if higher_is_better else challenger <= threshold
    delta = challenger - champion
    op = ">=" if higher_is_better else "<="
    return GateResult(
        name=name,
        passed=passed,
        metric=metric,
        value=challenger,
        threshold=threshold,
        details={
            "champion": champion,
            "challenger": challenger,
            "delta": delta,
            "margin": m,
            "better": direction,
            "no_champion": False,
        },
        duration=time.perf_counter() - start,
        message=(
            f"challenger {metric} {challenger:.6g} vs champion {champion:.6g} "
            f"(delta {delta:+.6g}); required {op} {threshold:.6g}: "
            f"{'pass' if passed else 'FAIL'}"
        ),
    )
