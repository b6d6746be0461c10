"""`tokenwire chat --image`, `classify-image` and `embed` against the in-process demo server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import InProcessServer
from mm_helpers import encode, noise_image
from tokenwire.cli import main


def _run(capsys: pytest.CaptureFixture[str], server: InProcessServer, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "--target", server.target, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def pictures(tmp_path: Path) -> dict[str, Path]:
    files = {"png": tmp_path / "cat.png", "jpg": tmp_path / "dog.jpg", "noext": tmp_path / "photo"}
    files["png"].write_bytes(encode(noise_image(0)))
    files["jpg"].write_bytes(encode(noise_image(1), "JPEG"))
    files["noext"].write_bytes(encode(noise_image(2), "WEBP"))  # no extension: the server detects it
    return files


def test_chat_with_images(
    capsys: pytest.CaptureFixture[str], demo_server: InProcessServer, pictures: dict[str, Path]
) -> None:
    code, out, err = _run(
        capsys,
        demo_server,
        "chat",
        "--model",
        "tiny-llava",
        "--image",
        str(pictures["png"]),
        "--max-new-tokens",
        "5",
        "--json",
        "What is in this picture?",
    )
    assert code == 0, err
    assert len(json.loads(out)["sequences"][0]["tokenIds"]) == 5
    code, out, err = _run(
        capsys,
        demo_server,
        "chat",
        "--model",
        "tiny-llava",
        "--image",
        str(pictures["jpg"]),
        "--image",
        str(pictures["noext"]),
        "--stream",
        "--max-new-tokens",
        "4",
        "Compare them.",
    )
    assert code == 0 and out.endswith("\n"), err


def test_classify_image_and_embed(
    capsys: pytest.CaptureFixture[str], demo_server: InProcessServer, pictures: dict[str, Path]
) -> None:
    code, out, err = _run(
        capsys,
        demo_server,
        "classify-image",
        "--model",
        "tiny-clip",
        "--image",
        str(pictures["noext"]),
        "cat",
        "dog",
        "car",
    )
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3, err
    assert sum(float(line.split("\t")[0]) for line in lines) == pytest.approx(1.0, abs=1e-3)
    code, out, err = _run(
        capsys,
        demo_server,
        "embed",
        "--model",
        "tiny-clip",
        "--text",
        "a cat",
        "--image",
        str(pictures["png"]),
        "--normalize",
        "--json",
    )
    reply = json.loads(out)
    assert code == 0 and reply["dimensions"] == 64 and len(reply["embeddings"]) == 2, err
    code, out, err = _run(capsys, demo_server, "embed", "--model", "tiny-clip", "--text", "word " * 100, "--truncate")
    assert code == 0 and len(out.split()) == 64, err


def test_bad_image_error_names_the_part(
    capsys: pytest.CaptureFixture[str], demo_server: InProcessServer, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.png"
    fake.write_bytes(encode(noise_image(0), "JPEG"))
    code, _, err = _run(capsys, demo_server, "chat", "--model", "tiny-llava", "--image", str(fake), "hi")
    assert code == 1 and "INVALID_ARGUMENT" in err and "field messages[0].parts[0].image" in err
