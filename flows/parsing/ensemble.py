"""The weighted ensemble: one more model whose prediction combines the others' scores.

As in the original Akka job, the ensemble predicts the arg-max of the weighted sum of the member
models' scores; a member that gives a bare label counts as score 1 for that label and 0 for every
other. Members missing from a record (or refused) simply do not vote; a record in which no member
voted has no ensemble prediction. Scores are finite, but a weighted sum can still overflow to
inf - inf = NaN: then no label is the arg-max and the ensemble's entry is refused (`NoVerdict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class NoVerdict(ValueError):
    """The weighted sums have no arg-max (one is NaN); the message is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class Ensemble:
    """Member weights and the name under which the ensemble is reported."""

    weights: Mapping[str, float]
    name: str = "ensemble"

    def predict(self, entries: Iterable[tuple[str, str, Mapping[str, float] | None]]) -> str | None:
        """Combine ``(model, predicted label, scores or None)`` entries of one record.

        Ties go to the label that sorts first, the same rule as a single model's arg-max.
        """
        totals: dict[str, float] = {}
        voted = False
        for model, label, scores in entries:
            weight = self.weights.get(model)
            if weight is None:
                continue
            voted = True
            if scores is None:
                totals[label] = totals.get(label, 0.0) + weight
            else:
                for name, score in scores.items():
                    totals[name] = totals.get(name, 0.0) + weight * score
        if not voted:
            return None
        undefined = sorted(label for label, total in totals.items() if total != total)
        if undefined:
            raise NoVerdict(
                f"the weighted score sum of {undefined[0]!r} is not a number "
                "(the weighted scores overflow to inf - inf)"
            )
        best = max(totals.values())
        return min(label for label, total in totals.items() if total == best)
