"""Per-model sliding windows of a confusion matrix, and the Bytewax operator that holds them.

In the order a batch meets them: `model_state` (the stateful operator: when to emit, what a
checkpoint holds) feeds `base.SlidingWindow.add`; a window kind (`count`, `time`) decides which
records it holds; `pairs` counts them and `record_log` keeps their ids and times. A new window
kind is a module here with a `SlidingWindow` and a `WindowPolicy`, plus one branch in
`window_policy` and its name in ``CONFUSION_WINDOW_KIND`` (flows/settings.py).

Delayed labels wait upstream of the windows in `join_store` (the pure join of prediction and label
halves by id: columns in, joined columns, counts and dead letters out) held by `join_state`, its
stateful operator, one per shard of the id space.
"""

from __future__ import annotations

from typing import Any

from flows.settings import Settings
from flows.windows.base import WindowKind, WindowPolicy
from flows.windows.count import CountPolicy
from flows.windows.time import TimePolicy


def window_policy(settings: Settings) -> WindowPolicy[Any, Any]:
    """The window kind ``CONFUSION_WINDOW_KIND`` names, with its size or duration."""
    if WindowKind(settings.window_kind) is WindowKind.TIME:
        return TimePolicy(settings.window_duration_ms, settings.score_bins)
    return CountPolicy(settings.window_size, settings.score_bins)
