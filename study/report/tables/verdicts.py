"""The claims' numbers: how many claims got each verdict, and how many change at the stable learning rate
(the claims table itself is ``study.report.claims.table``)."""
from __future__ import annotations

from .. import claims
from ..numbers import Numbers


def claim_numbers(judged, N: Numbers) -> None:
    """How many claims got each verdict."""
    counts: dict[str, int] = {}
    for j in judged:
        counts[j.verdict] = counts.get(j.verdict, 0) + 1
    changed = [j for j in judged if j.stable is not None and j.stable.verdict in claims.VERDICTS
               and j.stable.verdict != j.verdict]
    N.add("ClaimsChangedAtStableLr", len(changed), "{:d}")
    N.add("ClaimsJudgedAtStableLr", sum(j.stable is not None and j.stable.verdict in claims.VERDICTS for j in judged), "{:d}")
    for k, name in (("holds", "Holds"), ("partly", "Partly"), ("does not hold", "NotHold"), ("cannot tell", "CannotTell")):
        N.add(f"Claims{name}", counts.get(k, 0), "{:d}")
    N.add("ClaimsTotal", len(judged), "{:d}")
