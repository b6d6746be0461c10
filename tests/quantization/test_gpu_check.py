"""bench/gpu_check.py works before GPU time is spent on it: its --tiny run (same code, toy model,
CPU) serves a quantized and a split configuration through `tokenwire serve` and measures
transformers' generate() beside it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def test_tiny_run(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "report.json"
    assert (
        gpu_check.main(
            [
                "--tiny",
                "--configs",
                "nf4,split",
                "--new-tokens",
                "6",
                "--streams",
                "3",
                "--workdir",
                str(tmp_path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["tiny"] and report["device"] == "cpu" and set(report["configs"]) == {"nf4", "split"}
    for result in report["configs"].values():
        assert "error" not in result, result
        assert result["server_batch1"]["tokens"] == 6 and result["server_streams3"]["tokens"] == 18
        assert result["transformers"]["generate_batch1"]["tokens"] == 6
        assert result["transformers"]["generate_batch3"]["tokens"] == 18
        assert result["load_s"] > 0 and result["server_batch1"]["tok_s"] > 0
    assert report["configs"]["nf4"]["model_info"]["quantization"] == "nf4"
    split = report["configs"]["split"]["model_info"]
    assert split["placement"] == "explicit" and set(split["device_map"].values()) == {"cpu", "disk"}
