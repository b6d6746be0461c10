"""`tokenwire generate` / `chat` with --json-schema, --json-object, --regex, --grammar, --choice."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tokenwire.cli import main


def _run(capsys: pytest.CaptureFixture[str], server: Any, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "--target", server.target, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def _sequences(out: str) -> list[dict[str, Any]]:
    return list(json.loads(out)["sequences"])


def test_json_schema_from_a_file(capsys: pytest.CaptureFixture[str], demo_server: Any, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    argv = ["generate", "--json", "--model", "tiny-llama", "--sample", "--seed", "3", "-n", "3", "--json-schema"]
    code, out, _ = _run(capsys, demo_server, *argv, str(path), "Answer:")
    assert code == 0
    done = [s for s in _sequences(out) if s["finishReason"] == "FINISH_REASON_EOS_TOKEN"]
    assert done
    for s in done:
        assert isinstance(json.loads(s["text"])["ok"], bool)


def test_choice_and_regex(capsys: pytest.CaptureFixture[str], demo_server: Any) -> None:
    code, out, _ = _run(
        capsys, demo_server, "generate", "--model", "tiny-gpt2", "--choice", "yes", "--choice", "no", "Q?"
    )
    assert code == 0 and out.strip() in ("yes", "no")
    code, out, _ = _run(capsys, demo_server, "generate", "--json", "--model", "tiny-llama", "--regex", "[0-9]{3}", "N:")
    (sequence,) = _sequences(out)
    # Three digits, then the grammar allows only EOS: well within the default max_new_tokens.
    assert sequence["finishReason"] == "FINISH_REASON_EOS_TOKEN"
    assert re.fullmatch("[0-9]{3}", sequence["text"])


def test_grammar_from_stdin_and_streaming(
    capsys: pytest.CaptureFixture[str], demo_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('root ::= "left" | "right"'))
    code, out, _ = _run(capsys, demo_server, "generate", "--stream", "--model", "tiny-llama", "--grammar", "-", "Go")
    assert code == 0 and out.strip() in ("left", "right")


def test_kinds_are_exclusive_and_errors_name_the_field(capsys: pytest.CaptureFixture[str], demo_server: Any) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--target", demo_server.target, "--regex", "a", "--choice", "b", "x"])
    capsys.readouterr()
    code, _, err = _run(capsys, demo_server, "generate", "--model", "tiny-llama", "--regex", "((", "x")
    assert code != 0 and "constraint.regex" in err
