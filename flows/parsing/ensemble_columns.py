"""The weighted ensemble over a whole batch: a weighted sum of score matrices instead of a vote
per record.

`Ensemble.vote` stays the reference; this computes the same thing column by column when the
batch is regular enough to be sure of every float: every record names the same models in the
same order, each member sends bare labels in every record or score maps with one key order in
every record. Then the sums are added member by member in record order and the normalising total
in the order the labels first appear in the record, exactly the operations `vote` does, so the
predictions and scores are bit for bit the same. A record whose sums are not all finite (the
overflow `vote` refuses as NaN, or an infinity) is handed back to be judged one by one, and a
batch that is not regular gets None: the caller then judges every record as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from flows.parsing.labels import Codes, LabelTable

_LAST = np.iinfo(np.int64).max  # the rank of a label a record's members never named


@dataclass(frozen=True, slots=True)
class EnsembleColumns:
    """The ensemble's predictions for the batch's rows, and its scores."""

    pred: Codes  # -1 where no member voted
    score_keys: list[str]
    scores: NDArray[np.float64] | None  # (rows, score_keys), NaN where a row has no score
    refer: NDArray[np.bool_]  # rows to judge one by one (sums not finite)


def ensemble_columns(
    weights: Mapping[str, float],
    n: int,
    table: LabelTable,
    models: tuple[str, ...],
    bare: Mapping[str, Codes],
    maps: Mapping[str, tuple[tuple[str, ...], list[str], NDArray[np.float64]]],
) -> EnsembleColumns | None:
    """The ensemble of ``n`` rows that all name ``models``, in that order.

    ``bare``: members' predicted codes, for members that sent a bare label in every row;
    ``maps``: for members that sent a score map with one key order in every row, that order,
    the score columns' labels and the (rows, labels) scores. None when a member is in neither.
    """
    members = [m for m in models if m in weights]
    if not members:
        return EnsembleColumns(np.full(n, -1, dtype=np.int32), [], None, np.zeros(n, dtype=bool))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # rows go one by one
        return _vote(weights, n, table, members, bare, maps)


def _vote(
    weights: Mapping[str, float],
    n: int,
    table: LabelTable,
    members: list[str],
    bare: Mapping[str, Codes],
    maps: Mapping[str, tuple[tuple[str, ...], list[str], NDArray[np.float64]]],
) -> EnsembleColumns | None:
    k = len(table)
    totals = np.zeros((n, k))
    named = np.zeros((n, k), dtype=bool)
    rank = np.full((n, k), _LAST, dtype=np.int64)  # where each label first appears in the record
    rows = np.arange(n)
    step = 0
    for model in members:
        weight = weights[model]
        if model in bare:
            codes = bare[model]
            totals[rows, codes] = totals[rows, codes] + weight
            named[rows, codes] = True
            rank[rows, codes] = np.minimum(rank[rows, codes], step)
            step += 1
        elif model in maps:
            order, names, scores = maps[model]
            column = {name: j for j, name in enumerate(names)}
            for key in order:
                code = table.index[key]
                totals[:, code] = totals[:, code] + weight * scores[:, column[key]]
                named[:, code] = True
                rank[:, code] = np.minimum(rank[:, code], step)
                step += 1
        else:
            return None
    finite = np.isfinite(totals) | ~named
    refer = np.asarray(~finite.all(axis=1), dtype=bool)
    # The arg-max, ties to the label that sorts first: columns in label order, first maximum.
    by_label = sorted(range(k), key=table.labels.__getitem__)
    ranked = np.where(named & finite, totals, -np.inf)[:, by_label]
    pred = np.asarray(by_label, dtype=np.int32)[ranked.argmax(axis=1)]
    # The normalising total, summed in the order the record first named each label.
    whole = np.zeros(n)
    first_named = np.argsort(rank, axis=1, kind="stable")
    for j in range(k):
        col = first_named[:, j]
        whole = np.where(named[rows, col], whole + totals[rows, col], whole)
    scored = (whole > 0.0) & (whole < np.inf) & ~refer
    keys = [table.labels[c] for c in by_label if bool((named[:, c] & scored).any())]
    if not keys:
        return EnsembleColumns(pred, [], None, refer)
    held = [table.index[key] for key in keys]
    share = totals[:, held] / whole[:, None]
    out = np.where(named[:, held] & scored[:, None], share, np.nan)
    return EnsembleColumns(pred, keys, out, refer)
