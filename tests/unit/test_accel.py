"""The compiled decoder (accel/, `flows.parsing.accel`) gives exactly what the Python parser gives.

Every batch is parsed twice, with ``accel=False`` (the reference) and ``accel=True``: the columns
(codes, label tables, ids and their types, times, positions, score matrices bit for bit), the
dead letters with their reasons and the counts must be the same, on every test stream and on
lines mutated at random. The decoder either takes a batch whole or hands it back; the tests also
check that it does take the plain batches (else the comparisons would prove nothing).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bytewax.testing import TestingSink, TestingSource

from flows.confusion import Sinks
from flows.demo import demo_lines, sample_lines
from flows.limits import Limits
from flows.parsing import accel
from flows.parsing import batches as batches_module
from flows.parsing.batches import (
    DEFAULT_LIMITS,
    DeadLetter,
    ParsedBatch,
    RawBatch,
    parse_batch,
)
from flows.parsing.ensemble import Ensemble
from flows.parsing.fast_path import FastColumns
from flows.settings import accel_available, load_settings
from tests.flow.runner import execute, job_env, raw_batches
from tests.hostile import hostile_lines
from tests.streams import (
    ENSEMBLE_WEIGHTS,
    adversarial_stream,
    dumps,
    good_records,
    many_labels_stream,
    time_skew_stream,
)

needs_accel = pytest.mark.skipif(
    not accel_available(), reason="the compiled decoder is not built (no Rust toolchain)"
)

SAMPLE_WEIGHTS = {"model1": 0.5, "model2": 0.3, "model3": 0.2}


def test_the_decoder_is_built_wherever_rust_is() -> None:
    """scripts/install builds it when cargo is present: a broken build must not go unnoticed."""
    if shutil.which("cargo") is None or os.environ.get("CONFUSION_ACCEL") == "off":
        pytest.skip("no Rust toolchain here: the pure-Python parser is the job's only path")
    assert accel_available(), "cargo is here but confusion_accel is not installed: scripts/install"


def _array(a: np.ndarray[Any, Any] | None) -> tuple[str, tuple[int, ...], bytes] | None:
    return None if a is None else (str(a.dtype), a.shape, a.tobytes())


def _plain(parsed: ParsedBatch) -> dict[str, Any]:
    """Everything a parsed batch holds, in comparable form (floats as their exact bytes)."""
    return {
        "counts": (parsed.records, parsed.rejected_records, parsed.rejected_entries),
        "dead": [(d.raw, d.reason, d.origin, d.position, d.model) for d in parsed.dead],
        "models": [
            (
                model,
                cols.labels,
                _array(cols.truth),
                _array(cols.pred),
                cols.ids,
                [type(i).__name__ for i in cols.ids],
                _array(cols.ts),
                cols.origin,
                _array(cols.positions),
                cols.score_keys,
                _array(cols.scores),
            )
            for model, cols in parsed.by_model.items()
        ],
    }


def _compare(
    lines: Sequence[bytes],
    size: int,
    ensemble: Ensemble | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> int:
    """Parse ``lines`` in batches of ``size`` both ways; return how many batches accel took."""
    taken = 0
    for start in range(0, len(lines), size):
        values = list(lines[start : start + size])
        fallback = [1_700_000_000_000 + 7 * i for i in range(len(values))]
        batch = RawBatch(values, fallback, "test", list(range(start, start + len(values))))
        reference = _plain(parse_batch(batch, ensemble, limits, accel=False))
        compiled = _plain(parse_batch(batch, ensemble, limits, accel=True))
        assert compiled == reference, f"batch at line {start} differs"
        reserved = None if ensemble is None else ensemble.name
        taken += accel.decode(values, fallback, limits, reserved) is not None
    return taken


def _mutated(lines: Sequence[bytes], n: int, seed: int) -> list[bytes]:
    """``n`` lines, each one of ``lines`` with 1-3 bytes replaced, deleted or inserted."""
    rng = random.Random(seed)
    alphabet = b'{}[]":,0123456789.eE-+ \\tnulrfasZTz\xc3\xa9\n\x00'
    out = []
    for _ in range(n):
        line = bytearray(rng.choice(lines))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(line))
            op = rng.random()
            if op < 0.4:
                line[at] = rng.choice(alphabet)
            elif op < 0.7:
                del line[at]
            else:
                line.insert(at, rng.choice(alphabet))
        out.append(bytes(line))
    return out


@needs_accel
def test_sample_and_demo_streams() -> None:
    assert _compare(sample_lines(total=6000), 1000) == 6
    assert _compare(sample_lines(total=6000), 1000, Ensemble(SAMPLE_WEIGHTS, "ensemble")) == 6
    # The demo stream holds malformed records: those batches go to Python, the rest are taken.
    assert _compare(demo_lines(7, 10_000), 1000) >= 5


@needs_accel
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contract_streams(seed: int) -> None:
    """Unicode and integer labels, ties, missing entries and ``ts``, offsets, mixed kinds."""
    good = [dumps(r) for r in good_records(1500, seed)]
    assert _compare(good, 100) == 15
    assert _compare(good, 1) == 1500
    assert _compare(good, 100, Ensemble(ENSEMBLE_WEIGHTS, "ensemble")) == 15
    _compare(adversarial_stream(240, seed).lines, 50)
    _compare(adversarial_stream(240, seed).lines, 1)


@needs_accel
def test_more_streams() -> None:
    assert _compare(many_labels_stream().lines, 64) == 5
    assert _compare(time_skew_stream().lines, 25) >= 1


@needs_accel
@pytest.mark.parametrize("seed", [20261, 20262])
def test_hostile_records_one_by_one(seed: int) -> None:
    lines = hostile_lines(3000, seed)
    _compare(lines, 100)
    assert _compare(lines, 1) > 500  # its good records are taken, each alone


@needs_accel
@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_lines(seed: int) -> None:
    base = sample_lines(total=1000) + [dumps(r) for r in good_records(500, seed)]
    lines = _mutated(base, 10_000, seed)
    assert _compare(lines, 1) > 500  # many mutations still make valid records
    _compare(lines, 1, Ensemble(SAMPLE_WEIGHTS, "ensemble"))
    _compare(lines, 50)


EDGE_CASES = [
    # (record, taken by the compiled decoder?)
    (b'{"id":"a","label":"x","predictions":{"m":{"x":-0,"y":0}}}', True),  # -0 is +0.0
    (b'{"id":"a","label":"x","predictions":{"m":{"x":-0.0,"y":0.0}}}', True),
    (b'{"id":9223372036854775807,"label":-0,"predictions":{"m":7}}', True),
    (b'{"id":-9223372036854775808,"label":1,"predictions":{"m":"1"}}', True),
    (b'{"id":9223372036854775808,"label":"x","predictions":{"m":"x"}}', False),
    (b'{"id":1.0,"label":"x","predictions":{"m":"x"}}', False),
    (b'{"id":"a","label":"x","predictions":{"m":{"x":1e400}}}', False),
    (b'{"id":"a","label":"x","predictions":{"m":{"x":12345678901234567890}}}', False),
    (b'{"id":"a","label":"x","predictions":{"m":{"x":0.5,"x":0.6}}}', False),
    (b'{"id":"a","id":"b","label":"x","predictions":{"m":"x"}}', False),
    (b'{"id":"a","label":"x","predictions":{"m":"x","m":"y"}}', False),
    (b'{"id":"a","label":"x","predictions":{"m":"x"},"extra":1}', False),
    (b'{"id":"a\\u00e9","label":"x","predictions":{"m":"x"}}', False),
    (
        b'{"id":"\xc3\xa9","label":"\xe7\x8c\xab","predictions":{"\xe6\xa8\xa1":"\xf0\x9f\x99\x82"}}',
        True,
    ),
    (b'{"id":"\xff","label":"x","predictions":{"m":"x"}}', False),
    (b' \t{ "id" : "a" , "label" : "x" , "predictions" : { "m" : { "x" : 1 } } } \r\n', True),
    (b'{"id":"a","label":"x","predictions":{"m":"x"}} x', False),
    (b'{"id":"","label":"x","predictions":{"m":"x"}}', False),
    (b'{"id":"a","label":"x","predictions":{}}', False),
    (b'{"id":"a","label":"x","predictions":{"m":{}}}', False),
    (b'{"id":"a","label":"x","predictions":{"m":true}}', False),
    (b'{"id":"a","label":"x","ts":null,"predictions":{"m":"x"}}', True),
    (b'{"id":"a","label":"x","ts":"2024-02-29t23:59:59.9999+23:59","predictions":{"m":"x"}}', True),
    (b'{"id":"a","label":"x","ts":"2023-02-29T00:00:00Z","predictions":{"m":"x"}}', False),
    (b'{"id":"a","label":"x","ts":"2026-11-22T10:00:60Z","predictions":{"m":"x"}}', False),
    (b'{"id":"a","label":"x","ts":"0001-01-01T00:00:00+00:01","predictions":{"m":"x"}}', False),
    (b'{"id":"a","label":"x","ts":253402300799999,"predictions":{"m":"x"}}', True),
    (b'{"id":"a","label":"x","ts":253402300800000,"predictions":{"m":"x"}}', False),
    (b'{"id":"a","label":"x","ts":1.5,"predictions":{"m":"x"}}', False),
]


@needs_accel
@pytest.mark.parametrize(("line", "taken"), EDGE_CASES)
def test_edge_cases(line: bytes, taken: bool) -> None:
    assert _compare([line], 1) == int(taken)


@needs_accel
def test_limits_and_the_ensemble_name_send_the_batch_to_python() -> None:
    line = b'{"id":"a","label":"x","predictions":{"m":"x","n":"y"}}'
    assert _compare([line], 1, limits=Limits(models=1)) == 0
    assert _compare([line], 1, limits=Limits(record_bytes=len(line) - 1)) == 0
    assert _compare([line], 1, Ensemble({"m": 1.0}, "n")) == 0
    assert _compare([line], 1, Ensemble({"m": 1.0}, "e")) == 1


def test_accel_on_without_the_decoder_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.settings

    monkeypatch.setattr(flows.settings, "accel_available", lambda: False)
    with pytest.raises(Exception, match="CONFUSION_ACCEL=on"):
        load_settings({"CONFUSION_ACCEL": "on"})
    assert not load_settings({"CONFUSION_ACCEL": "auto"}).use_accel
    with pytest.raises(Exception, match="CONFUSION_ACCEL"):
        load_settings({"CONFUSION_ACCEL": "fast"})


@needs_accel
def test_settings_choose_the_decoder() -> None:
    assert load_settings({}).use_accel
    assert load_settings({"CONFUSION_ACCEL": "on"}).use_accel
    assert not load_settings({"CONFUSION_ACCEL": "off"}).use_accel


def _number_texts(rng: random.Random) -> list[str]:
    x = rng.random() * 10 ** rng.randint(-8, 8)
    return [
        repr(x),
        f"{x:.{rng.randint(0, 25)}f}",
        f"{x:.{rng.randint(1, 17)}e}",
        f"{rng.randint(0, 2**60)}",
        f"{rng.randint(0, 2**53)}.{rng.randint(0, 10**6):06d}",
        f"0.{'0' * rng.randint(0, 20)}{rng.randint(1, 10**15)}",
        f"-{rng.randint(0, 9)}.{rng.randint(0, 10**18)}E{rng.randint(-300, 300)}",
    ]


@needs_accel
def test_every_score_is_the_double_python_reads() -> None:
    """Scores written every which way (long fractions, exponents, big integers) decode to the
    same doubles on both paths: the compiled decoder's fast path is exact, not approximate."""
    rng = random.Random(17)
    lines = []
    for i in range(3000):
        a, b = rng.sample(_number_texts(rng), 2)
        lines.append(f'{{"id":{i},"label":"x","predictions":{{"m":{{"x":{a},"y":{b}}}}}}}'.encode())
    assert _compare(lines, 1) > 1500  # the rest hold integers over 2**53 or overflow
    _compare(lines, 100)


def test_install_without_rust_skips_the_decoder(tmp_path: Path) -> None:
    """The README's commands work where there is no Rust: scripts/install-accel says so and
    exits 0 when cargo is not on the PATH."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("bash", "cat", "sha256sum", "cut", "dirname"):
        found = shutil.which(name)
        assert found is not None
        (tools / name).symlink_to(found)
    env = {"PATH": str(tools), "HOME": str(tmp_path)}
    script = Path(__file__).resolve().parents[2] / "scripts" / "install-accel"
    done = subprocess.run(
        [str(tools / "bash"), str(script)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "no Rust toolchain" in done.stderr


@needs_accel
def test_the_job_writes_the_same_with_and_without_the_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole dataflow, CONFUSION_ACCEL=on against off: the same documents (but their
    emission time) and the same dead letters, on a stream with bad lines and missing times."""
    taken: list[int] = []
    real = batches_module.accel_decode

    def counting(*args: Any) -> FastColumns | None:
        got = real(*args)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(batches_module, "accel_decode", counting)
    lines = adversarial_stream(600, 3).lines + sample_lines(total=3000)
    fallback = [1_795_000_000_000 + 100 * i for i in range(len(lines))]
    outputs = []
    for mode in ("on", "off"):
        env = job_env(tmp_path, window_size=50, emit_every=7)
        env["CONFUSION_ACCEL"] = mode
        settings = load_settings(env)
        assert settings.use_accel is (mode == "on")
        documents: list[tuple[str, dict[str, Any]]] = []
        letters: list[tuple[str, DeadLetter]] = []
        execute(
            settings,
            source=TestingSource(raw_batches(lines, fallback, (100,))),
            sinks=Sinks(TestingSink(documents), TestingSink(letters)),
        )
        for _, doc in documents:
            doc.pop("emitted_at")
        outputs.append(([doc for _, doc in documents], [d.to_json() for _, d in letters]))
    assert outputs[0] == outputs[1]
    assert len(outputs[0][0]) > 500 and len(outputs[0][1]) > 10
    assert sum(taken) >= 30  # the sample's batches went through the decoder (only when on)
