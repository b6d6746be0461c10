"""The KV pool and the pool path's forwards against transformers' own forward.

`arrange` copies only the rows whose content changes; the pool path's logits for prompts of
mixed lengths, joins, forks and beam-style reorders equal the model run on each sequence alone
(uncached, its own attention), for Llama and GPT-2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenwire.config import ModelSpec
from tokenwire.engine.kv_pool import KVPool, PoolShape, arrangement_moves
from tokenwire.engine.pool_runner import PoolRunner
from tokenwire.engine.pool_setup import open_pool
from tokenwire.models.loader import LoadedModel, load_model


def test_arrangement_moves_only_what_changes() -> None:
    assert arrangement_moves([0, 1, 2], [4, 5, 6]) == ([], [], 0)
    # row 1 leaves: row 2 moves down to slot 1, up to its length
    assert arrangement_moves([0, 2], [4, 5, 6]) == ([1], [2], 6)
    # beams: row 1 follows parent 0, row 0 stays
    assert arrangement_moves([0, 0, 2], [3, 9, 3]) == ([1], [0], 3)


def test_copy_slots_reads_every_source_before_writing() -> None:
    pool = KVPool(
        PoolShape(layers=2, slots=3, slot_tokens=4, kv_heads=1, head_dim=2, dtype=torch.float32),
        [torch.device("cpu")] * 2,
    )
    for layer in range(2):
        for slot in range(3):
            pool.keys[layer][slot] = slot
            pool.values[layer][slot] = 10 + slot
    pool.copy_slots([0, 1, 2], [2, 0, 1], tokens=4)  # a rotation: every slot is a source too
    for layer in range(2):
        assert [int(pool.keys[layer][s, 0, 0, 0]) for s in range(3)] == [2, 0, 1]
        assert [int(pool.values[layer][s, 3, 0, 1]) for s in range(3)] == [12, 10, 11]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def pooled(request: pytest.FixtureRequest, demo_models_dir: Path) -> tuple[LoadedModel, PoolRunner]:
    model = load_model(ModelSpec(name=request.param, path=str(demo_models_dir / request.param), max_batch_size=4))
    choice = open_pool(model, model.modules[next(iter(model.modules))])
    assert choice.runner is not None, choice.reason
    return model, choice.runner


def _alone(model: LoadedModel, ids: list[int]) -> torch.Tensor:
    """Last-position logits of `ids` run alone, without the pool."""
    module = next(iter(model.modules.values()))
    with torch.inference_mode():
        return module(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].float()


def test_pool_path_equals_each_sequence_alone(pooled: tuple[LoadedModel, PoolRunner]) -> None:
    model, runner = pooled
    runner.reset()
    seqs = [[5, 9, 12, 40, 7], [8, 3], [100, 200, 300, 17, 18, 19, 20]]
    logits = runner.prefill(seqs[:2])  # two prompts of different lengths, packed
    for i in range(2):
        torch.testing.assert_close(logits[i], _alone(model, seqs[i]), atol=1e-4, rtol=1e-4)
    logits = runner.prefill(seqs[2:])  # one joins later
    torch.testing.assert_close(logits[0], _alone(model, seqs[2]), atol=1e-4, rtol=1e-4)
    for step in range(3):
        tokens = [30 + step + i for i in range(3)]
        logits = runner.decode(tokens)
        for i, token in enumerate(tokens):
            seqs[i].append(token)
            torch.testing.assert_close(logits[i], _alone(model, seqs[i]), atol=1e-4, rtol=1e-4)
    # row 0 leaves, row 2 forks (a beam child of it), row 1 stays: rows become [1, 2, 2]
    runner.arrange([1, 2, 2])
    seqs = [seqs[1], seqs[2], list(seqs[2])]
    assert runner.lengths == [len(s) for s in seqs]
    tokens = [50, 51, 52]
    logits = runner.decode(tokens)
    for i, token in enumerate(tokens):
        seqs[i].append(token)
        torch.testing.assert_close(logits[i], _alone(model, seqs[i]), atol=1e-4, rtol=1e-4)
    runner.reset()


def test_chunked_prompt_joins_as_the_next_row(pooled: tuple[LoadedModel, PoolRunner]) -> None:
    model, runner = pooled
    runner.reset()
    runner.prefill([[5, 6, 7]])
    prompt = list(range(20, 43))
    assert runner.prefill_chunk(prompt[:10], 0, last=False) is None
    runner.decode([8])  # the batch decodes between chunks
    last = runner.prefill_chunk(prompt[10:], 10, last=True)
    assert last is not None
    torch.testing.assert_close(last[0], _alone(model, prompt), atol=1e-4, rtol=1e-4)
    runner.join_chunked()
    assert runner.lengths == [4, len(prompt)]
    logits = runner.decode([9, 60])
    torch.testing.assert_close(logits[1], _alone(model, prompt + [60]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[0], _alone(model, [5, 6, 7, 8, 9]), atol=1e-4, rtol=1e-4)
    runner.reset()


def test_pool_is_sized_by_the_reservation(demo_models_dir: Path) -> None:
    spec = ModelSpec(
        name="m", path=str(demo_models_dir / "tiny-llama"), max_batch_size=3, max_input_tokens=100, max_new_tokens=28
    )
    model = load_model(spec)
    choice = open_pool(model, model.modules[next(iter(model.modules))])
    assert choice.runner is not None
    shape = choice.runner.pool.shape
    assert (shape.slots, shape.slot_tokens) == (3, 128)
    assert model.reservation is not None
    assert sum(choice.runner.pool.bytes_per_device().values()) == model.reservation.kv_total


def test_no_reservation_means_the_fallback(demo_models_dir: Path) -> None:
    model = load_model(ModelSpec(name="m", path=str(demo_models_dir / "tiny-llama"), kv_cache_reserve=0))
    choice = open_pool(model, model.modules[next(iter(model.modules))])
    assert choice.runner is None and "kv_cache_reserve" in choice.reason


def test_a_slot_that_changes_hands_leaves_no_poison(pooled: tuple[LoadedModel, PoolRunner]) -> None:
    """NaN left beyond a row's length by an earlier occupant (an fp16 overflow, say) is masked
    out, but 0 × NaN is NaN: the slot is cleaned when a new row takes it."""
    model, runner = pooled
    runner.reset()
    runner.prefill([list(range(30, 42))])  # 12 tokens in slot 0
    for layer in range(runner.pool.shape.layers):
        runner.pool.keys[layer][0, 4:12] = float("nan")
        runner.pool.values[layer][0, 4:12] = float("inf")
    runner.arrange([])  # it leaves
    short, long = [5, 6, 7], list(range(50, 60))
    runner.prefill([short, long])  # the short row takes slot 0, the long one slot 1
    logits = runner.decode([8, 9])  # lengths differ: a masked decode over 11 positions
    torch.testing.assert_close(logits[0], _alone(model, short + [8]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[1], _alone(model, long + [9]), atol=1e-4, rtol=1e-4)
    runner.reset()


def test_the_probe_survives_reused_host_logits(demo_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, host logits are views of one reused pinned buffer, valid until the next forward.
    The same reuse on the CPU: the probe must still find the pool exact (it once compared a
    prefill's logits after the decode step had overwritten them, sending every GPU model down
    the fallback path)."""
    from tokenwire.engine.runner import HostLogits

    def reused(self: HostLogits, logits: torch.Tensor) -> torch.Tensor:
        rows, vocab = logits.shape
        if self._pinned is None or self._pinned.shape[0] < rows or self._pinned.shape[1] != vocab:
            self._pinned = torch.empty((max(rows, 8), vocab), dtype=torch.float32)
        self._pinned[:rows].copy_(logits)
        return self._pinned[:rows]

    monkeypatch.setattr(HostLogits, "__call__", reused)
    model = load_model(ModelSpec(name="m", path=str(demo_models_dir / "tiny-llama"), max_batch_size=2))
    choice = open_pool(model, model.modules[next(iter(model.modules))])
    assert choice.runner is not None, choice.reason
