"""A deterministic synthetic prediction stream: the embedded default, with a drift to watch.

Three models over classes A, B and C. ``model1`` (score maps) stays good; ``model2`` (score maps)
degrades half way, starting to over-predict A; ``model3`` (bare labels) keeps its skill while the
class mix shifts towards C in the last quarter. One record in 5,000 is deliberately malformed, so
the dead-letter path is visible too. Record ``i`` depends only on ``(seed, i)``, which is what lets
a resumed run regenerate exactly the records it has not yet counted.
"""

from __future__ import annotations

import numpy as np
import orjson
from numpy.typing import NDArray

CLASSES = ("A", "B", "C")
START_MS = 1_795_341_600_000  # 2026-11-22T10:00:00Z
STEP_MS = 50
BLOCK = 1000
BAD_EVERY = 5000


def _guesses(
    rng: np.random.Generator, truth: NDArray[np.int64], skill: float, bias: int | None = None
) -> NDArray[np.int64]:
    """Predicted class codes: right with probability ``skill``, else wrong (towards ``bias``)."""
    n = len(truth)
    wrong = (truth + rng.integers(1, len(CLASSES), n)) % len(CLASSES)
    if bias is not None:
        wrong = np.where((rng.random(n) < 0.7) & (truth != bias), bias, wrong)
    return np.where(rng.random(n) < skill, truth, wrong)


def _score_maps(rng: np.random.Generator, pred: NDArray[np.int64]) -> list[str]:
    """JSON score maps whose arg-max is ``pred`` (rounded to 4 digits, so ties can occur)."""
    raw = rng.random((len(pred), len(CLASSES))) * 0.5
    raw[np.arange(len(pred)), pred] += 1.0
    scores = np.round(raw / raw.sum(axis=1, keepdims=True), 4)
    return [f'{{"A":{a},"B":{b},"C":{c}}}' for a, b, c in scores.tolist()]


def _malformed(i: int) -> bytes:
    kind = (i // BAD_EVERY) % 5
    rid = f"demo-{i:07d}"
    if kind == 0:
        return b'{"id": "' + rid.encode() + b'", "label": "A", "predictions": {'  # truncated
    if kind == 1:
        return orjson.dumps({"id": rid, "predictions": {"model1": "A"}})  # no label
    if kind == 2:
        return orjson.dumps({"id": rid, "label": "B", "predictions": {}})
    if kind == 3:
        return orjson.dumps(
            {"id": rid, "label": "C", "predictions": {"model1": {"A": "high", "B": 0.1}}}
        )
    # One bad entry in an otherwise good record: only model2's entry is refused.
    return orjson.dumps(
        {
            "id": rid,
            "label": "A",
            "predictions": {
                "model1": {"A": 0.9, "B": 0.05, "C": 0.05},
                "model2": [],
                "model3": "A",
            },
        }
    )


def _block(seed: int, block: int, total: int) -> list[bytes]:
    lo, hi = block * BLOCK, min(total, (block + 1) * BLOCK)
    rng = np.random.default_rng([seed, block])
    index = np.arange(lo, hi)
    late = index >= total * 3 // 4
    drifted = index >= total // 2
    priors = np.where(late[:, None], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2])
    truth = (rng.random(len(index))[:, None] > np.cumsum(priors, axis=1)).sum(axis=1)
    m1 = _score_maps(rng, _guesses(rng, truth, 0.90))
    m2 = _score_maps(
        rng, np.where(drifted, _guesses(rng, truth, 0.62, bias=0), _guesses(rng, truth, 0.93))
    )
    m3 = _guesses(rng, truth, 0.85)
    lines = []
    for k, i in enumerate(index.tolist()):
        if i % BAD_EVERY == BAD_EVERY - 1:
            lines.append(_malformed(i))
            continue
        lines.append(
            (
                f'{{"id":"demo-{i:07d}","ts":{START_MS + i * STEP_MS},'
                f'"label":"{CLASSES[truth[k]]}","predictions":{{"model1":{m1[k]},'
                f'"model2":{m2[k]},"model3":"{CLASSES[m3[k]]}"}}}}'
            ).encode()
        )
    return lines


def demo_lines(seed: int, total: int, start: int = 0, stop: int | None = None) -> list[bytes]:
    """Records ``start .. stop - 1`` of the stream of ``total`` records, as JSON lines."""
    stop = total if stop is None else min(stop, total)
    out: list[bytes] = []
    block = start // BLOCK
    while block * BLOCK < stop:
        lines = _block(seed, block, total)
        lo = max(start - block * BLOCK, 0)
        hi = min(stop - block * BLOCK, len(lines))
        out.extend(lines[lo:hi])
        block += 1
    return out


# ----------------------------------------------------------------------------- the sample stream

SAMPLE_RECORDS = 6000
SAMPLE_SEED = 7
SAMPLE_STEP_MS = 250


def _sample_guesses(
    rng: np.random.Generator, truth: NDArray[np.int64], skill: NDArray[np.float64] | float
) -> NDArray[np.int64]:
    """Two-class guesses: ``truth`` with probability ``skill``, else the other class."""
    return np.where(rng.random(len(truth)) < skill, truth, 1 - truth)


def _sample_scores(rng: np.random.Generator, pred: NDArray[np.int64]) -> list[str]:
    """``{"A": p, "B": 1 - p}`` maps whose larger score (0.7 to 0.999, never a tie) is ``pred``."""
    top = np.round(rng.uniform(0.7, 0.999, len(pred)), 4)
    a = np.where(pred == 0, top, np.round(1 - top, 4))
    b = np.round(1 - a, 4)
    return [f'{{"A":{x},"B":{y}}}' for x, y in zip(a.tolist(), b.tolist(), strict=True)]


def sample_lines(seed: int = SAMPLE_SEED, total: int = SAMPLE_RECORDS) -> list[bytes]:
    """The small sample stream of tests, benchmarks and docs: clean records, two classes, a drift.

    ``total`` records (6,000 by default) over classes A and B: ``model1`` (score maps) is right
    about 92% of the time, ``model2`` (score maps) about 89% until record ``total // 2`` and about
    59% after it, ``model3`` (bare labels) about 80%. Ids ``r-000001`` on, times from
    2026-11-22T10:00:00.250Z every 250 ms. Unlike the demo stream it has no malformed record, so
    every line counts; the same seed gives the same bytes.
    """
    rng = np.random.default_rng([seed, total])
    truth = (rng.random(total) < 0.5).astype(np.int64)
    index = np.arange(total)
    m1 = _sample_scores(rng, _sample_guesses(rng, truth, 0.92))
    m2 = _sample_scores(rng, _sample_guesses(rng, truth, np.where(index < total // 2, 0.89, 0.59)))
    m3 = _sample_guesses(rng, truth, 0.80)
    names = ("A", "B")
    stamps = np.datetime_as_string(
        np.datetime64(START_MS + SAMPLE_STEP_MS, "ms") + index * SAMPLE_STEP_MS, unit="ms"
    )
    return [
        (
            f'{{"id":"r-{i + 1:06d}","ts":"{stamps[i]}Z","label":"{names[truth[i]]}",'
            f'"predictions":{{"model1":{m1[i]},"model2":{m2[i]},'
            f'"model3":"{names[m3[i]]}"}}}}'
        ).encode()
        for i in range(total)
    ]


# ------------------------------------------------------------------- the delayed-labels variant

UNLABELED = 0.15  # share of predictions whose label never comes
DELAY_MEDIAN_MS = 60_000  # label delays: log-normal around one minute ...
DELAY_SIGMA = 1.2
DELAY_MAX_MS = 20 * 60_000  # ... cut at twenty minutes


def _delays(seed: int, block: int, n: int) -> NDArray[np.int64]:
    """Label delay in ms of each record of ``block``; -1 for a record never labeled."""
    rng = np.random.default_rng([seed, block, 12])
    delay = np.minimum(
        np.exp(rng.normal(np.log(DELAY_MEDIAN_MS), DELAY_SIGMA, n)), DELAY_MAX_MS
    ).astype(np.int64)
    return np.where(rng.random(n) < UNLABELED, -1, delay)


def delayed_slices(total: int, slice_ms: int) -> int:
    """How many slices of ``slice_ms`` the delayed stream spans (the last label included)."""
    return -(-(total * STEP_MS + DELAY_MAX_MS + 1) // slice_ms)


def delayed_slice(seed: int, total: int, s: int, slice_ms: int) -> tuple[list[bytes], list[int]]:
    """Slice ``s`` of the delayed-labels demo: its records and their positions, in time order.

    The demo's records split in two: a prediction half at the record's time and, for most, a
    label half ``delay`` later (log-normal, median a minute, at most twenty; 15% never come).
    A slice covers event times ``[s * slice_ms, (s + 1) * slice_ms)`` after the start and
    depends only on ``(seed, total, s)``, so a resumed run regenerates exactly what it had not
    read. Positions: ``i`` for record i's prediction, ``total + i`` for its label.
    """
    lo_ms, hi_ms = s * slice_ms, (s + 1) * slice_ms
    first = max(0, (lo_ms - DELAY_MAX_MS) // STEP_MS)
    last = min(total, -(-hi_ms // STEP_MS))
    events: list[tuple[int, int, int, bytes]] = []  # (time, kind, position, bytes)
    if first < last:
        lines = demo_lines(seed, total, first, last)
        delays = np.concatenate(
            [
                _delays(seed, b, min(total, (b + 1) * BLOCK) - b * BLOCK)
                for b in range(first // BLOCK, (last - 1) // BLOCK + 1)
            ]
        )[first - first // BLOCK * BLOCK :]
        for k, line in enumerate(lines):
            i = first + k
            at = i * STEP_MS
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if type(record) is not dict or "label" not in record or "predictions" not in record:
                if lo_ms <= at < hi_ms:  # a malformed record stays as it is
                    events.append((at, 0, i, line))
                continue
            if lo_ms <= at < hi_ms:
                half = {k2: v for k2, v in record.items() if k2 != "label"}
                events.append((at, 0, i, orjson.dumps(half)))
            delay = int(delays[k])
            if delay >= 0 and lo_ms <= at + delay < hi_ms:
                label = {"id": record["id"], "ts": START_MS + at + delay, "label": record["label"]}
                events.append((at + delay, 1, total + i, orjson.dumps(label)))
    events.sort()
    return [e[3] for e in events], [e[2] for e in events]
