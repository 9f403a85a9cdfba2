"""RFC 3339 timestamps of a whole batch to epoch milliseconds, column by column in numpy.

The common batch writes every ``ts`` the same way (``2026-11-22T10:00:00.250Z``: one length, one
layout). Then the strings are one byte matrix and the date arithmetic is a handful of numpy
operations, with no Python object per record. Anything else (mixed layouts, a field out of
range, a time outside years 1 to 9999) returns None and the caller judges the batch value by
value with `flows.parsing.checks.timestamp_ms`, the reference, so verdicts and reasons never
change. The RFC 3339 form (`checks.RFC3339_LINES`) is checked here too, column by column.

msgspec can parse RFC 3339 in C too (a ``datetime`` field), but it is not the project's RFC 3339:
it accepts ``+0100`` offsets and rounds fractions past microseconds instead of flooring, and its
datetime objects still need a Python step each to become milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_MS_PER_DAY = 86_400_000
_ZERO = ord("0")


def _digits(cells: NDArray[np.uint8], lo: int, hi: int) -> NDArray[np.int64]:
    """The decimal number in columns ``lo .. hi - 1`` of every row."""
    out = np.zeros(len(cells), dtype=np.int64)
    for col in range(lo, hi):
        out = out * 10 + (cells[:, col].astype(np.int64) - _ZERO)
    return out


def _days_from_civil(
    y: NDArray[np.int64], m: NDArray[np.int64], d: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: NDArray[np.int64] = era * 146_097 + doe - 719_468
    return days


_DAYS_IN_MONTH = np.asarray([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _form(cells: NDArray[np.uint8], digits: list[int], fixed: dict[int, bytes]) -> bool:
    """Whether every row has a digit in each column of ``digits`` and, in each column of
    ``fixed``, one of its bytes."""
    if not bool(((cells[:, digits] - np.uint8(_ZERO)) < 10).all()):
        return False
    for col, allowed in fixed.items():
        column = cells[:, col]
        ok = column == allowed[0]
        for other in allowed[1:]:
            ok |= column == other
        if not bool(ok.all()):
            return False
    return True


_DATE_TIME_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_DATE_TIME_FIXED = {4: b"-", 7: b"-", 10: b"Tt ", 13: b":", 16: b":"}


def batch_ms(values: Sequence[str], min_ms: int, max_ms: int) -> NDArray[np.int64] | None:
    """Epoch ms of RFC 3339 strings that share one length and layout, or None (judge one by one).

    Sub-millisecond digits are floored, as `timestamp_ms` does; None also when any field is out
    of range or any time falls outside ``min_ms .. max_ms``, so every refusal keeps its reason.
    """
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    width = len(values[0])
    if width < 20:
        return None
    joined = "".join(values)
    if len(joined) != n * width or not joined.isascii():
        return None
    cells = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(n, width)
    last = cells[:, width - 1]
    if bool(((last == ord("Z")) | (last == ord("z"))).all()):
        end = width - 1  # the fraction (if any) ends before the Z
        offset_min = np.zeros(n, dtype=np.int64)
    elif width >= 25 and bool(np.isin(cells[:, width - 6], (ord("+"), ord("-"))).all()):
        end = width - 6
        oh, om = _digits(cells, width - 5, width - 3), _digits(cells, width - 2, width)
        if bool((oh > 23).any() or (om > 59).any()):
            return None
        offset_min = np.where(cells[:, width - 6] == ord("-"), -1, 1) * (oh * 60 + om)
    else:
        return None
    digits = _DATE_TIME_DIGITS + list(range(20, end))
    fixed = dict(_DATE_TIME_FIXED)
    if end > 19:
        fixed[19] = b"."
    if end < width - 1:  # a +HH:MM offset
        digits += [width - 5, width - 4, width - 2, width - 1]
        fixed[width - 3] = b":"
    if width < 20 or end == 20 or not _form(cells, digits, fixed):
        return None
    if end == 19:
        millis = np.zeros(n, dtype=np.int64)
    else:
        frac = min(end, 23)  # digits past the third are floored away
        millis = _digits(cells, 20, frac) * 10 ** (23 - frac)
    year, month, day = _digits(cells, 0, 4), _digits(cells, 5, 7), _digits(cells, 8, 10)
    hour, minute, second = _digits(cells, 11, 13), _digits(cells, 14, 16), _digits(cells, 17, 19)
    if bool(
        (year < 1).any()
        or (month < 1).any()
        or (month > 12).any()
        or (day < 1).any()
        or (hour > 23).any()
        or (minute > 59).any()
        or (second > 59).any()
    ):
        return None
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    if bool((day > _DAYS_IN_MONTH[month] + (leap & (month == 2))).any()):
        return None
    ms = (
        _days_from_civil(year, month, day) * _MS_PER_DAY
        + ((hour * 60 + minute - offset_min) * 60 + second) * 1000
        + millis
    )
    if bool((ms < min_ms).any() or (ms > max_ms).any()):
        return None
    return ms
