"""The connectors' one retry policy: capped doubling delays with jitter, retry what is transient."""

from __future__ import annotations

import pytest

from flows.connectors.retry import Backoff, Transient, retry_forever


def test_delays_double_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(cap=1.0, first=0.1)
    delays = [backoff.next_delay() for _ in range(8)]
    nominal = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(0.8 * n <= d <= n for d, n in zip(delays, nominal, strict=True)), delays
    assert backoff.attempt == 8


def test_transient_failures_are_retried_then_the_value_returned() -> None:
    failures = [Transient("busy"), ConnectionError("down"), Transient("busy")]
    seen: list[tuple[str, str, int]] = []

    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    def transient(exc: Exception) -> str | None:
        return type(exc).__name__ if isinstance(exc, Transient | ConnectionError) else None

    result = retry_forever(
        call,
        transient,
        lambda exc, reason, attempt, _pause: seen.append((str(exc), reason, attempt)),
        Backoff(cap=0.001, first=0.001),
    )
    assert result == "done"
    assert seen == [
        ("busy", "Transient", 1),
        ("down", "ConnectionError", 2),
        ("busy", "Transient", 3),
    ]


def test_a_failure_retrying_cannot_fix_is_raised_at_once() -> None:
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        retry_forever(call, lambda exc: None, lambda *_: None, Backoff())
    assert calls == 1
