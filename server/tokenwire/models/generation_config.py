"""Load a checkpoint's generation_config.json leniently.

transformers refuses some files outright ("Greedy methods … do not support
`num_return_sequences` different than 1"), which makes `from_pretrained` fail and the model
unusable — a known way other servers crash. Here each offending key is dropped, with a
warning naming it, until transformers accepts the rest; the server validates what it uses
itself (tokenwire.engine.defaults).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import GenerationConfig

log = logging.getLogger(__name__)
_FILE = "generation_config.json"
_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def lenient_generation_config(model_dir: str, model_name: str) -> GenerationConfig | None:
    """None when the file is absent or transformers accepts it as is (let it load normally)."""
    path = Path(model_dir) / _FILE
    if not path.is_file():
        return None
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("model %s: %s is unreadable (%s); using no generation defaults", model_name, _FILE, exc)
        return GenerationConfig()
    values = {k: v for k, v in raw.items() if k != "transformers_version"}
    dropped: list[str] = []
    for _ in range(len(values) + 1):
        try:
            config = GenerationConfig(**values)
            break
        except (ValueError, TypeError) as exc:
            culprit = next((k for k in values if k not in _IDS and k in str(exc)), None)
            if culprit is None:  # cannot tell which key: keep only the special token ids
                log.warning("model %s: %s rejected (%s); keeping only its token ids", model_name, _FILE, exc)
                values = {k: v for k, v in values.items() if k in _IDS}
                dropped.append("everything else")
                continue
            log.warning("model %s: %s is inconsistent (%s); ignoring %r", model_name, _FILE, exc, culprit)
            dropped.append(culprit)
            del values[culprit]
    else:  # pragma: no cover - every key dropped and still refused
        config = GenerationConfig()
    return config if dropped else None
