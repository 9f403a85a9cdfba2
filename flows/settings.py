"""Every setting of the job, read once from ``CONFUSION_*`` environment variables.

A bad value stops the job before the dataflow starts, with a message that names the variable and
what it accepts: a streaming job that starts and then misbehaves is far harder to debug than one
that refuses to start.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.alert_settings import AlertSettings
from flows.errors import ConfigError
from flows.limits import MAX_CLASSES, MAX_MODELS, MAX_RECORD_BYTES

ENV_PREFIX = "CONFUSION_"
KAFKA_OPT_PREFIX = "CONFUSION_KAFKA_OPT_"
# Read by scripts/services and scripts/image, not by the job; listed so they do not trigger
# the typo warning.
_SCRIPT_VARIABLES = {
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "ES_PORT",
    "ES_TRANSPORT_PORT",
    "SERVICES_DIR",
    "SERVICES_CACHE",
    "SERVICES_TIMEOUT",
    "SERVICES_STOP_TIMEOUT",
    "ES_JAVA_HOME",
    "KAFKA_JAVA_HOME",
    "ES_JAVA_OPTS",
    "KAFKA_JAVA_OPTS",
    "LOG_LINES",
    # scripts/image
    "IMAGE_ENGINE",
    "IMAGE_BASE",
    "IMAGE_MIRROR",
    "IMAGE_CACHE",
}


class Settings(AlertSettings, BaseModel):
    """The job's configuration; field ``x`` is read from ``CONFUSION_X`` by `load_settings`.

    The alerting and Prometheus fields come from `AlertSettings`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["demo", "file", "kafka", "elasticsearch"] = "demo"
    input: Path | None = None
    demo_records: int = Field(100_000, ge=1, le=100_000_000)
    demo_seed: int = 2026
    sink: Literal["jsonl", "console", "elasticsearch"] = "jsonl"
    output: Path = Path("out/confusion.jsonl")
    dead_letter_path: Path = Path("out/dead-letter.jsonl")

    window_kind: Literal["count", "time"] = "count"
    window_size: int = Field(1000, ge=1, le=100_000_000)
    window_duration: str | None = None
    emit_every: int = Field(100, ge=1, le=100_000_000)
    score_bins: int = Field(100, ge=0, le=1000)  # 0: score statistics off
    ensemble_weights: str = ""
    ensemble_name: str = Field("ensemble", min_length=1)
    batch_size: int = Field(1000, ge=1, le=100_000)
    # The compiled batch decoder (accel/): used when installed (auto), never (off), or required
    # (on: its absence stops the job at start instead of a silent fallback to Python).
    accel: Literal["auto", "on", "off"] = "auto"
    max_record_bytes: int = Field(MAX_RECORD_BYTES, ge=64, le=1 << 30)
    max_models: int = Field(MAX_MODELS, ge=1, le=100_000)
    max_classes: int = Field(MAX_CLASSES, ge=2, le=100_000)

    # Delayed labels (README: Ground truth that arrives later): the join is on when a labels
    # source is named or the TTL is set.
    label_ttl: str | None = None
    labels_input: Path | None = None
    labels_topic: str | None = None
    join_shards: int = Field(1, ge=1, le=4096)
    demo_labels: Literal["combined", "delayed"] = "combined"

    progress: Literal["auto", "on", "off"] = "auto"
    log_format: Literal["text", "json"] = "text"
    summary: bool = True
    heartbeat_file: Path | None = None

    kafka_bootstrap: str | None = None
    kafka_topic: str | None = None
    kafka_start: Literal["earliest", "latest"] = "earliest"
    kafka_config_file: Path | None = None
    kafka_group: str | None = None
    kafka_stop_at_end: bool = False
    dlq_topic: str | None = None
    dlq_index: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]*$")

    es_url: str | None = None
    es_index: str = Field("confusion-history", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    es_api_key: SecretStr | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_ca_certs: Path | None = None
    es_verify_certs: bool = True
    es_request_timeout: float = Field(30.0, gt=0)
    es_bulk_docs: int = Field(500, ge=1, le=100_000)
    es_bulk_bytes: int = Field(5_000_000, ge=10_000, le=100_000_000)
    es_max_backoff: float = Field(30.0, gt=0)
    es_flush_interval: float = Field(0.1, ge=0)
    es_partitions: int = Field(12, ge=1, le=1024)
    # An index, alias or pattern (comma-separated for several); ES index names are lower case.
    es_source_index: str | None = Field(None, pattern=r"^[a-z0-9*][a-z0-9._*+,-]*$")
    es_source_start: Literal["earliest", "latest"] = "earliest"
    es_source_poll: float = Field(1.0, gt=0, le=3600)
    es_source_stop_at_end: bool = False

    @field_validator("window_duration")
    @classmethod
    def _duration_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration_ms(value)
        return value

    @field_validator("label_ttl")
    @classmethod
    def _ttl_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration_ms(value)
        return value

    @field_validator("ensemble_weights")
    @classmethod
    def _weights_parse(cls, value: str) -> str:
        parse_weights(value)
        return value

    @field_validator("accel")
    @classmethod
    def _accel_installed(cls, value: str) -> str:
        if value == "on" and not accel_available():
            raise ValueError(
                "CONFUSION_ACCEL=on but the compiled decoder (confusion_accel) is not installed: "
                "run scripts/install-accel (needs a Rust toolchain) or set CONFUSION_ACCEL=auto"
            )
        return value

    @property
    def use_accel(self) -> bool:
        """Whether parsing uses the compiled decoder (installed and not turned off)."""
        return self.accel != "off" and accel_available()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.source == "file":
            if self.input is None:
                raise ValueError(
                    "CONFUSION_SOURCE=file needs CONFUSION_INPUT, the path of a JSON-lines file"
                )
            if not self.input.is_file():
                raise ValueError(f"CONFUSION_INPUT={self.input} is not a readable file")
        if self.source == "kafka":
            if not self.kafka_bootstrap:
                raise ValueError(
                    "CONFUSION_SOURCE=kafka needs CONFUSION_KAFKA_BOOTSTRAP (host:port[,host:port])"
                )
            if not self.kafka_topics:
                raise ValueError(
                    "CONFUSION_SOURCE=kafka needs CONFUSION_KAFKA_TOPIC "
                    "(one topic or several, comma-separated)"
                )
            if self.kafka_config_file is not None and not self.kafka_config_file.is_file():
                raise ValueError(
                    f"CONFUSION_KAFKA_CONFIG_FILE={self.kafka_config_file} is not a readable file"
                )
        if self.source == "elasticsearch":
            if not self.es_url:
                raise ValueError(
                    "CONFUSION_SOURCE=elasticsearch needs CONFUSION_ES_URL "
                    "(e.g. https://es.example:9200)"
                )
            if not self.es_source_index:
                raise ValueError(
                    "CONFUSION_SOURCE=elasticsearch needs CONFUSION_ES_SOURCE_INDEX"
                    " (an index, alias or pattern such as raw_data_input*)"
                )
            if self.sink == "elasticsearch" and _reads_own_output(
                self.es_source_index, self.es_index
            ):
                raise ValueError(
                    f"CONFUSION_ES_SOURCE_INDEX={self.es_source_index!r} matches "
                    f"the job's own output CONFUSION_ES_INDEX={self.es_index!r}"
                )
        elif self.dlq_index is not None:
            raise ValueError(
                "CONFUSION_DLQ_INDEX is for CONFUSION_SOURCE=elasticsearch; "
                "other sources have their own dead letters (see README)"
            )
        if self.sink == "elasticsearch" or self.source == "elasticsearch":
            if not self.es_url:
                raise ValueError(
                    "CONFUSION_SINK=elasticsearch needs CONFUSION_ES_URL "
                    "(e.g. https://es.example:9200)"
                )
            if self.es_api_key is not None and self.es_username is not None:
                raise ValueError(
                    "set either CONFUSION_ES_API_KEY or CONFUSION_ES_USERNAME/"
                    "CONFUSION_ES_PASSWORD, not both"
                )
            if (self.es_username is None) != (self.es_password is None):
                raise ValueError("CONFUSION_ES_USERNAME and CONFUSION_ES_PASSWORD go together")
        if self.labels_input is not None:
            if self.source != "file":
                raise ValueError(
                    "CONFUSION_LABELS_INPUT is read with CONFUSION_SOURCE=file; "
                    "with Kafka name CONFUSION_LABELS_TOPIC"
                )
            if not self.labels_input.is_file():
                raise ValueError(
                    f"CONFUSION_LABELS_INPUT={self.labels_input} is not a readable file"
                )
        if self.labels_topic is not None and self.source != "kafka":
            raise ValueError(
                "CONFUSION_LABELS_TOPIC is read with CONFUSION_SOURCE=kafka; "
                "with files name CONFUSION_LABELS_INPUT"
            )
        if self.window_kind == "time" and self.window_duration is None:
            raise ValueError(
                "CONFUSION_WINDOW_KIND=time needs CONFUSION_WINDOW_DURATION "
                "(e.g. 15m, 90s, 1h, 500ms)"
            )
        if self.ensemble_name in self.weights:
            raise ValueError(
                f"CONFUSION_ENSEMBLE_NAME={self.ensemble_name!r} is also a model "
                "in CONFUSION_ENSEMBLE_WEIGHTS; pick another name"
            )
        return self

    @property
    def window_duration_ms(self) -> int:
        return parse_duration_ms(self.window_duration) if self.window_duration else 0

    @property
    def join(self) -> bool:
        """Whether prediction and label halves are joined by id (README: delayed labels)."""
        return (
            self.labels_input is not None
            or bool(self.labels_topic)
            or self.label_ttl is not None
            or (self.source == "demo" and self.demo_labels == "delayed")
        )

    @property
    def label_ttl_ms(self) -> int:
        """How long a half waits for the other, in event-time milliseconds: 7 days by default,
        30 minutes on the delayed-labels demo (so that its never-labeled share expires)."""
        if self.label_ttl:
            return parse_duration_ms(self.label_ttl)
        if self.source == "demo" and self.demo_labels == "delayed":
            return 30 * 60_000
        return 7 * 86_400_000

    @property
    def weights(self) -> dict[str, float]:
        """Ensemble weights by model; empty when no ensemble is configured."""
        return parse_weights(self.ensemble_weights)

    @property
    def kafka_topics(self) -> list[str]:
        """The topics read: ``CONFUSION_KAFKA_TOPIC`` then ``CONFUSION_LABELS_TOPIC``."""
        names = f"{self.kafka_topic or ''},{self.labels_topic or ''}"
        return list(dict.fromkeys(t.strip() for t in names.split(",") if t.strip()))

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.kafka_topics[0]}.dead-letter"


def accel_available() -> bool:
    """Whether the compiled decoder imports (a small extension module: settings stay light).

    Importable, not merely found: a broken build must not pass CONFUSION_ACCEL=on and then
    leave every batch to Python.
    """
    try:
        importlib.import_module("confusion_accel")
    except ImportError:
        return False
    return True


def _reads_own_output(pattern: str, index: str) -> bool:
    """Whether the source pattern takes in the sink's history or latest index."""
    from fnmatch import fnmatchcase

    return any(
        fnmatchcase(name, part.strip())
        for part in pattern.split(",")
        for name in (index, f"{index}-latest")
    )


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """``500ms``, ``90s``, ``15m``, ``12h``, ``7d`` or plain seconds, in milliseconds."""
    raw = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h", "d") if raw.endswith(u)), "")
    number = raw[: len(raw) - len(unit)] if unit else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(
            f"expected a duration such as 500ms, 90s, 15m or 1h, got {text!r}"
        ) from None
    if not math.isfinite(value) or round(value * _UNITS_MS[unit or "s"]) < 1:
        raise ValueError(f"a duration must be a finite time of at least 1ms, got {text!r}")
    return round(value * _UNITS_MS[unit or "s"])


def parse_weights(text: str) -> dict[str, float]:
    """Parse ``model1=0.5,model2=0.6`` into a mapping, refusing anything ambiguous."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = part.rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"expected model=weight pairs separated by commas, got {part!r}")
        try:
            weight = float(raw)
        except ValueError:
            raise ValueError(f"weight of {name!r} is not a number: {raw!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {raw!r}")
        if name in weights:
            raise ValueError(f"model {name!r} is given twice")
        weights[name] = weight
    if weights and not any(w > 0 for w in weights.values()):
        raise ValueError("at least one ensemble weight must be > 0")
    return weights


def kafka_options(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings passed through as ``CONFUSION_KAFKA_OPT_SASL_USERNAME=...``.

    The suffix is lower-cased and ``_`` becomes ``.``; librdkafka property names use dots only.
    """
    env = os.environ if env is None else env
    return {
        key[len(KAFKA_OPT_PREFIX) :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.upper().startswith(KAFKA_OPT_PREFIX)
    }


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + str(loc[0]).upper() if loc else "configuration"


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a cross-field check: its message already names the variables
        return message
    return f"{_env_name(error['loc'])}: {message} (got {error['input']!r})"


def warn_unknown(env: Mapping[str, str], stream: Any = sys.stderr) -> list[str]:
    """Name ``CONFUSION_*`` variables that are no setting: a typo must not pass silently."""
    known = {name.upper() for name in Settings.model_fields} | _SCRIPT_VARIABLES
    unknown = []
    for key in env:
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(KAFKA_OPT_PREFIX):
            continue
        name = upper[len(ENV_PREFIX) :]
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
            print(
                f"confusion-stream: warning: {key} is not a setting and is ignored{hint}",
                file=stream,
            )
            unknown.append(key)
    return unknown


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting, raising one ConfigError that lists all problems."""
    env = dict(os.environ if env is None else env)
    warn_unknown(env)
    values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.upper().startswith(ENV_PREFIX) and value != ""
    }
    known = set(Settings.model_fields)
    try:
        return Settings.model_validate({k: v for k, v in values.items() if k in known})
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"invalid configuration:\n{problems}") from None
