"""Static-shape decode steps (what a GPU captures as CUDA graphs, one per batch bucket), run
eagerly on the CPU: the same logits as the dynamic path for every bucket, with padded rows,
rows of different lengths, joins, leaves and a chunked prompt waiting in the staging slot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenwire.config import ModelSpec
from tokenwire.engine.decode_graphs import bucket_sizes
from tokenwire.engine.pool_runner import PoolRunner
from tokenwire.engine.pool_setup import open_pool
from tokenwire.models.loader import LoadedModel, load_model


def test_bucket_sizes() -> None:
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(6) == (1, 2, 4, 6)
    assert bucket_sizes(32) == (1, 2, 4, 8, 16, 24, 32)
    assert bucket_sizes(20) == (1, 2, 4, 8, 16, 20)


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def both(request: pytest.FixtureRequest, demo_models_dir: Path) -> tuple[LoadedModel, PoolRunner, PoolRunner]:
    """The same model twice: static-shape decode steps, and the dynamic path."""

    def runner(static: bool) -> tuple[LoadedModel, PoolRunner]:
        model = load_model(
            ModelSpec(
                name=request.param,
                path=str(demo_models_dir / request.param),
                max_batch_size=6,
                max_input_tokens=40,
                max_new_tokens=24,
            )
        )
        choice = open_pool(model, model.modules[next(iter(model.modules))], static_decode=static)
        assert choice.runner is not None, choice.reason
        return model, choice.runner

    model, static = runner(True)
    _, dynamic = runner(False)
    assert static.graphs is not None and static.graphs.buckets == (1, 2, 4, 6) and dynamic.graphs is None
    assert static.pool.scratch_slot == 6
    return model, static, dynamic


def test_static_steps_equal_the_dynamic_path(both: tuple[LoadedModel, PoolRunner, PoolRunner]) -> None:
    _, static, dynamic = both
    prompts = [[5, 9, 12, 40, 7], [8, 3], [100, 200, 300, 17, 18, 19, 20]]
    long_prompt = list(range(60, 80))

    def same(a: torch.Tensor, b: torch.Tensor) -> None:
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

    for r in (static, dynamic):
        r.reset()
        r.prefill(prompts[:1])
    for step in range(9):
        if step == 2:  # two join: 3 rows run in bucket 4 (one padded row)
            for r in (static, dynamic):
                r.prefill(prompts[1:])
        if step == 4:  # a long prompt builds up in the staging slot while the rows decode
            for r in (static, dynamic):
                r.prefill_chunk(long_prompt[:10], 0, last=False)
        if step == 6:  # the middle row leaves
            for r in (static, dynamic):
                r.arrange([0, 2])
        rows = static.rows
        ids = [(13 * step + 7 * i) % 500 for i in range(rows)]
        same(static.decode(ids), dynamic.decode(ids))
        assert static.lengths == dynamic.lengths
    for r in (static, dynamic):  # the chunked prompt was not disturbed by the padded rows' writes
        last = r.prefill_chunk(long_prompt[10:], 10, last=True)
        assert last is not None
        r.join_chunked()
    same(static.decode([1, 2, 3]), dynamic.decode([1, 2, 3]))
    for r in (static, dynamic):
        r.reset()


def test_static_steps_are_used_only_where_a_bucket_fits(both: tuple[LoadedModel, PoolRunner, PoolRunner]) -> None:
    _, static, _ = both
    assert static.graphs is not None
    assert static.graphs.pick(3) is not None and static.graphs.pick(3).bucket == 4  # type: ignore[union-attr]
    assert static.graphs.pick(6).bucket == 6  # type: ignore[union-attr]
    assert static.graphs.pick(7) is None
