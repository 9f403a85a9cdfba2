"""The alerting and Prometheus settings, validated at start like every other setting.

`AlertSettings` is a base of `flows.settings.Settings`: its fields are read from
``CONFUSION_<FIELD>`` like the others, and a bad rule, a missing baseline file or an alerts topic
without Kafka stops the job before it starts, naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, Field, field_validator, model_validator

from flows.output.alerts import AlertPolicy, Baseline, parse_rules, read_baselines

if TYPE_CHECKING:  # flows.windows imports the settings: import it lazily here
    from flows.windows.drift import DriftConfig

DEFAULT_RULES = "accuracy drop>0.1"


class AlertSettings(BaseModel):
    """Rules, detectors, alert destinations and the Prometheus endpoint."""

    alert_rules: str = DEFAULT_RULES
    alert_min_fill: float = Field(1.0, gt=0, le=1)
    alert_baseline_file: Path | None = None
    alerts_output: Path = Path("out/alerts.jsonl")
    alerts_topic: str | None = None

    drift_detector: Literal["adwin", "off"] = "adwin"
    drift_delta: float = Field(0.002, gt=0, lt=1)
    drift_clock: int = Field(32, ge=1, le=1_000_000)
    drift_scores: bool = True

    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_addr: str = Field("0.0.0.0", min_length=1)  # a pod serves on its own IP
    metrics_max_classes: int = Field(10, ge=1, le=1000)
    metrics_max_models: int = Field(100, ge=1, le=100_000)

    @field_validator("alert_rules")
    @classmethod
    def _rules_parse(cls, value: str) -> str:
        parse_rules(value)
        return value

    @field_validator("alert_baseline_file")
    @classmethod
    def _baseline_reads(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_baseline_file(value)
        return value

    @model_validator(mode="after")
    def _alerts_consistent(self) -> AlertSettings:
        if self.alerts_topic is not None and not getattr(self, "kafka_bootstrap", None):
            raise ValueError(
                "CONFUSION_ALERTS_TOPIC needs CONFUSION_KAFKA_BOOTSTRAP "
                "(host:port[,host:port]) to reach Kafka"
            )
        return self

    def drift_config(self) -> DriftConfig:
        from flows.windows.drift import DriftConfig

        return DriftConfig(
            self.drift_detector, self.drift_delta, self.drift_clock, self.drift_scores
        )

    def alert_policy(self) -> AlertPolicy:
        pinned = (
            load_baseline_file(self.alert_baseline_file)
            if self.alert_baseline_file is not None
            else {}
        )
        config = self.drift_config()
        return AlertPolicy(
            parse_rules(self.alert_rules),
            self.alert_min_fill,
            pinned,
            config.describe() if config.enabled else {},
        )


def load_baseline_file(path: Path) -> dict[str, Baseline]:
    """Read a pinned baseline file; ValueError says what is wrong with it."""
    try:
        data: Any = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read the baseline file {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the baseline file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the baseline file {path} is not a JSON object")
    return read_baselines(data)
