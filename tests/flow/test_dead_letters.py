"""The dead-letter file: one line per refused record or entry, with the raw line and the reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.flow.cases import expected, stream
from tests.flow.runner import FlowOutput, run_file
from tests.streams import BAD_LINES, BLANK_LINES, BadLine

Letter = dict[str, Any]


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def adversarial_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, FlowOutput]:
    """The adversarial stream through the job's file source, once per worker count."""
    tmp = tmp_path_factory.mktemp(f"dead-letters-{request.param}")
    output = run_file(
        stream("adversarial").lines,
        tmp,
        window_size=5,
        emit_every=7,
        workers=request.param,
        batch_size=16,
    )
    return tmp / "input.jsonl", output


def raw_of(letter: Letter) -> bytes:
    if "raw" in letter:
        return str(letter["raw"]).encode("utf-8")
    return bytes.fromhex(letter["raw_hex"])


def letters_at(output: FlowOutput, line: int) -> list[Letter]:
    return [d for d in output.dead_letters if d["source"]["position"] == line]


@pytest.mark.parametrize("bad", BAD_LINES, ids=lambda b: b.kind)
def test_each_malformed_kind_is_dead_lettered_with_line_and_reason(
    adversarial_run: tuple[Path, FlowOutput], bad: BadLine
) -> None:
    path, output = adversarial_run
    s = stream("adversarial")
    (index,) = [i for i, b in s.bad.items() if b is bad]
    letters = letters_at(output, index + 1)
    assert len(letters) == 1, letters
    letter = letters[0]
    assert raw_of(letter) == bad.raw
    assert ("raw_hex" in letter) == (bad.kind == "invalid-utf8")
    assert letter["scope"] == bad.scope
    assert letter.get("model") == bad.model
    assert bad.reason in letter["reason"]
    assert letter["source"] == {"origin": str(path), "position": index + 1}


def test_blank_lines_are_skipped_silently(adversarial_run: tuple[Path, FlowOutput]) -> None:
    _, output = adversarial_run
    s = stream("adversarial")
    blank = [i + 1 for i, line in enumerate(s.lines) if line in BLANK_LINES]
    assert len(blank) == len(BLANK_LINES)
    assert [d for d in output.dead_letters if d["source"]["position"] in blank] == []


def test_dead_letters_are_exactly_the_reference_rejections(
    adversarial_run: tuple[Path, FlowOutput],
) -> None:
    """No good line is refused, nothing is written twice (also with 2 workers)."""
    _, output = adversarial_run
    reference = expected("adversarial", 5, 7, "none", known_fallback=False, engine="exact")
    want = Counter((r.index + 1, r.scope, r.model) for r in reference.rejections)
    got = Counter(
        (d["source"]["position"], d["scope"], d.get("model")) for d in output.dead_letters
    )
    assert got == want
