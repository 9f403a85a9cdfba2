"""Named input streams and their reference results, each computed once per test session."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache

from tests.reference import ExpectedRun, MetricsEngine, expected_run
from tests.streams import (
    ENSEMBLE_WEIGHTS,
    Stream,
    adversarial_stream,
    many_labels_stream,
    sample_stream,
    single_class_stream,
)

STREAMS: dict[str, Callable[[], Stream]] = {
    "sample": sample_stream,
    "adversarial": lambda: adversarial_stream(240, seed=1),
    "adversarial-short": lambda: adversarial_stream(40, seed=3),
    "many-labels": many_labels_stream,
    "single-class": single_class_stream,
}

WEIGHTS: dict[str, Mapping[str, float]] = {
    "none": {},
    "sample": {"model1": 0.5, "model2": 0.3, "model3": 0.2},
    "adversarial": ENSEMBLE_WEIGHTS,
}


@cache
def stream(name: str) -> Stream:
    return STREAMS[name]()


@cache
def expected(
    name: str,
    window_size: int,
    emit_every: int,
    weights: str = "none",
    known_fallback: bool = True,
    engine: MetricsEngine = "sklearn",
) -> ExpectedRun:
    """The reference run of stream ``name``.

    ``known_fallback`` is False for the file source, whose fallback time is the arrival time;
    ``engine`` is ``exact`` where scikit-learn on every window would take too long.
    """
    s = stream(name)
    return expected_run(
        s.lines,
        window_size=window_size,
        emit_every=emit_every,
        weights=WEIGHTS[weights],
        fallback_ts=s.fallback_ts if known_fallback else None,
        engine=engine,
    )
