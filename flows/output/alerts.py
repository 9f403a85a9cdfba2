"""Alerts: rules on window metrics, the alert documents, and one model's open/resolved state.

Pure: no Bytewax, no I/O. `AlertBook` holds one model's alert state (which alerts are open, the
baseline) and lives inside the model's Bytewax state, so it survives a crash with the window it
judges. Every transition is a document: ``fired`` when a condition starts to hold, ``resolved``
when it stops. Both carry ``alert_id`` = ``model/what/fired_seq``; the document ``id`` adds the
status. A replay after recovery rebuilds the same state from the same records and so the same
ids, which is what lets every sink overwrite instead of duplicate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

STATE_VERSION = 1
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mcc", "kappa")
PER_CLASS = ("precision", "recall", "f1")
FIRST_FULL_WINDOW = "first_full_window"
PINNED = "pinned"

Doc = dict[str, Any]
Op = Literal["<", ">", "drop", "rise"]
_OPS: dict[str, Op] = {"<": "<", ">": ">", "drop": "drop", "rise": "rise"}

_RULE = re.compile(
    r"^\s*(?P<metric>[a-z_][a-z0-9_]*)(?:\[(?P<cls>[^\]]+)\])?\s*"
    r"(?P<op><|>|drop\s*>|rise\s*>)\s*(?P<value>[-+0-9.eE]+)\s*(?P<pct>%)?\s*$"
)


@dataclass(frozen=True)
class Rule:
    """One condition on a window metric.

    ``<``/``>``: the metric is below/above ``value`` (an absolute floor or ceiling).
    ``drop``/``rise``: the metric fell/rose by more than ``value`` from the baseline
    (``relative``: by more than that fraction of the baseline).
    """

    metric: str
    op: Op
    value: float
    cls: str | None = None
    relative: bool = False

    @cached_property
    def target(self) -> str:
        return self.metric if self.cls is None else f"{self.metric}[{self.cls}]"

    @cached_property
    def name(self) -> str:
        """The canonical text of the rule, e.g. ``accuracy<0.8`` or ``macro_f1-drop>10%``."""
        amount = f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"
        if self.op in ("<", ">"):
            return f"{self.target}{self.op}{amount}"
        return f"{self.target}-{self.op}>{amount}"

    @property
    def needs_baseline(self) -> bool:
        return self.op in ("drop", "rise")

    def read(self, metrics: Mapping[str, Any]) -> float | None:
        """The rule's metric in a document's ``metrics`` object; None when undefined."""
        if self.cls is None:
            value = metrics.get(self.metric)
        else:
            value = metrics.get("per_class", {}).get(self.cls, {}).get(self.metric)
        return float(value) if isinstance(value, int | float) else None

    def limit(self, baseline: float | None) -> float | None:
        """The level the metric is compared with: the floor, or baseline minus the drop."""
        if not self.needs_baseline:
            return self.value
        if baseline is None:
            return None
        amount = abs(baseline) * self.value if self.relative else self.value
        return baseline - amount if self.op == "drop" else baseline + amount

    def breached(self, value: float, baseline: float | None) -> bool | None:
        """Whether the condition holds; None when it cannot be judged (no baseline yet)."""
        limit = self.limit(baseline)
        if limit is None:
            return None
        return value < limit if self.op in ("<", "drop") else value > limit


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Parse ``accuracy<0.8; macro_f1 drop>0.1; recall[A] drop>20%`` (``;`` or ``,``).

    ``none`` or an empty text means no rules. Raises ValueError naming the bad part.
    """
    if text.strip().lower() in ("", "none", "off"):
        return ()
    rules: list[Rule] = []
    for part in (p for p in re.split(r"[;,]", text) if p.strip()):
        match = _RULE.match(part)
        if match is None:
            raise ValueError(
                f"cannot read rule {part.strip()!r}: expected METRIC<NUMBER, "
                "METRIC>NUMBER, METRIC drop>NUMBER[%] or METRIC rise>NUMBER[%]"
            )
        metric, cls = match["metric"], match["cls"]
        known = PER_CLASS if cls is not None else HEADLINE
        if metric not in known:
            what = "per-class metric" if cls is not None else "metric"
            raise ValueError(
                f"rule {part.strip()!r}: unknown {what} {metric!r}; one of "
                f"{', '.join(known)}" + ("" if cls else " (or precision|recall|f1[CLASS])")
            )
        op = _OPS[match["op"][:4]]
        try:
            value = float(match["value"])
        except ValueError:
            raise ValueError(f"rule {part.strip()!r}: {match['value']!r} is not a number") from None
        relative = match["pct"] is not None
        if relative and op in ("<", ">"):
            raise ValueError(
                f"rule {part.strip()!r}: % is for drop/rise (relative to the "
                "baseline); a floor is an absolute value"
            )
        if relative:
            value /= 100
        if not math.isfinite(value) or (op in ("drop", "rise") and value <= 0):
            raise ValueError(f"rule {part.strip()!r}: drop/rise needs a finite amount > 0")
        rule = Rule(metric, op, value, cls, relative)
        if any(r.name == rule.name for r in rules):
            raise ValueError(f"rule {rule.name!r} is given twice")
        rules.append(rule)
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The metrics a drop/rise rule compares with, and where they come from."""

    metrics: Mapping[str, Any]
    seq: int | None
    source: str  # FIRST_FULL_WINDOW or PINNED

    def to_json(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "seq": self.seq, "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(data["metrics"], data.get("seq"), data.get("source", FIRST_FULL_WINDOW))


@dataclass(frozen=True)
class AlertPolicy:
    """The rules, when they may fire, and pinned baselines by model (settings, not state)."""

    rules: tuple[Rule, ...] = ()
    min_fill: float = 1.0
    pinned: Mapping[str, Baseline] = field(default_factory=dict)
    detector: Mapping[str, Any] = field(default_factory=dict)  # DriftConfig.describe()

    @cached_property
    def rule_names(self) -> frozenset[str]:
        return frozenset(rule.name for rule in self.rules)


def window_fill(window: Mapping[str, Any]) -> float:
    """How full a document's window is, 0..1: records over size (count windows), or the time
    the window spans over its duration (time windows; 1 once it has covered a duration)."""
    if window.get("full"):
        return 1.0
    size = window.get("size") or 0
    if size <= 0:
        return 0.0
    if window.get("kind") == "time":
        try:
            span = (_parse_iso(window["end"]) - _parse_iso(window["start"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return 0.0
        return min(1.0, max(0.0, span * 1000 / size))
    return min(1.0, float(window.get("count", 0)) / size)


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def alert_document(
    *,
    status: str,
    model: str,
    source: str,
    name: str,
    metric: str,
    value: float | None,
    fired_seq: int,
    seq: int,
    fired_at: str,
    at: str,
    window: Mapping[str, Any],
    emitted_at: str,
    threshold: float | None = None,
    limit: float | None = None,
    baseline: Baseline | None = None,
    baseline_value: float | None = None,
    detector: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> Doc:
    """One alert transition, the shape of README "Alert documents"."""
    alert_id = f"{model}/{name}/{fired_seq}"
    return {
        "id": f"{alert_id}/{status}",
        "alert_id": alert_id,
        "status": status,
        "model": model,
        "source": source,
        "name": name,
        "metric": metric,
        "value": _finite(value),
        "threshold": threshold,
        "limit": _finite(limit),
        "baseline": _finite(baseline_value),
        "baseline_seq": baseline.seq if baseline is not None else None,
        "baseline_source": baseline.source if baseline is not None else None,
        "detector": dict(detector) if detector is not None else None,
        "window": dict(window),
        "seq": seq,
        "fired_seq": fired_seq,
        "fired_at": fired_at,
        "at": at,
        "emitted_at": emitted_at,
        "reason": reason,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class AlertBook:
    """One model's alert state: open alerts by name, and the baseline of its drop rules."""

    def __init__(
        self, policy: AlertPolicy, model: str = "", resume: Mapping[str, Any] | None = None
    ) -> None:
        self.policy = policy
        self.model = model
        self.open: dict[str, dict[str, Any]] = {}
        self.baseline: Baseline | None = None
        if resume is not None and resume.get("v") == STATE_VERSION:
            self.open = {name: dict(info) for name, info in resume["open"].items()}
            if resume.get("baseline") is not None:
                self.baseline = Baseline.from_json(resume["baseline"])

    def _baseline(self) -> Baseline | None:
        pinned = self.policy.pinned.get(self.model)
        return pinned if pinned is not None else self.baseline

    def on_document(self, doc: Mapping[str, Any], now: Callable[[], str]) -> list[Doc]:
        """Judge every rule on one window document; return the transitions.

        ``now`` gives the ``emitted_at`` text, asked for only when something changes.
        """
        self.model = doc["model"]
        window, metrics, seq = doc["window"], doc["metrics"], doc["seq"]
        out: list[Doc] = []
        if self.open:
            names = self.policy.rule_names
            for name in [
                n for n, info in self.open.items() if info["source"] == "rule" and n not in names
            ]:
                out.append(
                    self._resolve(
                        name, None, seq, window, now(), reason="rule no longer configured"
                    )
                )
        if not self.policy.rules or window_fill(window) < self.policy.min_fill:
            return out
        if self.baseline is None and window.get("full"):
            self.baseline = Baseline(
                {k: metrics.get(k) for k in (*HEADLINE, "per_class")}, seq, FIRST_FULL_WINDOW
            )
        baseline = self._baseline()
        for rule in self.policy.rules:
            value = rule.read(metrics)
            if value is None:
                continue  # undefined in this window
            base = None
            if rule.needs_baseline:
                base = rule.read(baseline.metrics) if baseline is not None else None
                if base is None:
                    continue  # nothing to compare with yet
            breached = rule.breached(value, base)
            is_open = rule.name in self.open
            if breached and not is_open:
                self.open[rule.name] = {
                    "source": "rule",
                    "fired_seq": seq,
                    "fired_at": window["end"],
                }
                out.append(
                    self._doc(
                        "fired",
                        rule.name,
                        rule.target,
                        value,
                        seq,
                        window,
                        now(),
                        rule,
                        baseline if rule.needs_baseline else None,
                        base,
                    )
                )
            elif breached is False and is_open:
                out.append(
                    self._resolve(rule.name, value, seq, window, now(), rule=rule, base=base)
                )
        return out

    def on_change(
        self,
        name: str,
        metric: str,
        degraded: bool,
        before: float,
        after: float,
        records: int,
        seq: int,
        window: Mapping[str, Any],
        emitted_at: str,
    ) -> list[Doc]:
        """A detector saw a change: a degradation fires ``name``, a recovery resolves it."""
        detector = {**self.policy.detector, "records": records}
        if degraded and name not in self.open:
            self.open[name] = {"source": "detector", "fired_seq": seq, "fired_at": window["end"]}
            return [
                alert_document(
                    status="fired",
                    model=self.model,
                    source="detector",
                    name=name,
                    metric=metric,
                    value=after,
                    fired_seq=seq,
                    seq=seq,
                    fired_at=window["end"],
                    at=window["end"],
                    window=window,
                    emitted_at=emitted_at,
                    baseline_value=before,
                    detector=detector,
                )
            ]
        if not degraded and name in self.open:
            info = self.open.pop(name)
            return [
                alert_document(
                    status="resolved",
                    model=self.model,
                    source="detector",
                    name=name,
                    metric=metric,
                    value=after,
                    fired_seq=info["fired_seq"],
                    seq=seq,
                    fired_at=info["fired_at"],
                    at=window["end"],
                    window=window,
                    emitted_at=emitted_at,
                    baseline_value=before,
                    detector=detector,
                )
            ]
        return []

    def _doc(
        self,
        status: str,
        name: str,
        metric: str,
        value: float | None,
        seq: int,
        window: Mapping[str, Any],
        emitted_at: str,
        rule: Rule,
        baseline: Baseline | None,
        base: float | None,
    ) -> Doc:
        info = self.open[name]
        return alert_document(
            status=status,
            model=self.model,
            source="rule",
            name=name,
            metric=metric,
            value=value,
            fired_seq=info["fired_seq"],
            seq=seq,
            fired_at=info["fired_at"],
            at=window["end"],
            window=window,
            emitted_at=emitted_at,
            threshold=rule.value,
            limit=rule.limit(base),
            baseline=baseline,
            baseline_value=base,
        )

    def _resolve(
        self,
        name: str,
        value: float | None,
        seq: int,
        window: Mapping[str, Any],
        emitted_at: str,
        rule: Rule | None = None,
        base: float | None = None,
        reason: str | None = None,
    ) -> Doc:
        info = self.open.pop(name)
        baseline = self._baseline() if rule is not None and rule.needs_baseline else None
        return alert_document(
            status="resolved",
            model=self.model,
            source="rule",
            name=name,
            metric=rule.target if rule is not None else name,
            value=value,
            fired_seq=info["fired_seq"],
            seq=seq,
            fired_at=info["fired_at"],
            at=window["end"],
            window=window,
            emitted_at=emitted_at,
            threshold=rule.value if rule is not None else None,
            limit=rule.limit(base) if rule is not None else None,
            baseline=baseline,
            baseline_value=base,
            reason=reason,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "open": {n: dict(i) for n, i in self.open.items()},
            "baseline": self.baseline.to_json() if self.baseline is not None else None,
        }


def read_baselines(data: Mapping[str, Any]) -> dict[str, Baseline]:
    """Pinned baselines from a baseline file's JSON (written by ``flows.tools.baseline``)."""
    if data.get("v") != 1 or not isinstance(data.get("models"), dict):
        raise ValueError(
            'not a baseline file of version 1 (expected {"v": 1, "models": '
            "{...}}); record one with python -m flows.tools.baseline"
        )
    out: dict[str, Baseline] = {}
    for model, entry in data["models"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
            raise ValueError(f"baseline of model {model!r} has no 'metrics' object")
        out[model] = Baseline(entry["metrics"], entry.get("seq"), PINNED)
    return out
