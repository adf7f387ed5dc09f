"""Retraining the ToyWorld prior for a few steps from the recipe reproduces the committed first-step losses.

The committed `generators/models/toy/weights/training/first_steps.json` holds the exact loss of each
of the first steps of the recipe (PriorNetConfig(), PriorTrainConfig(), WorldConfig(), the real data
pool) run from scratch at one thread. Training is deterministic for a fixed thread count, so a
retrain must give the same numbers. The data comes from the shared on-demand cache that
train_prior uses (<repo>/.cache/toyworld/data): chunks that are missing there are rendered first.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from generators.toyworld.config import PriorNetConfig, PriorTrainConfig, SceneSampling, WorldConfig
from generators.toyworld.data import render_chunk
from generators.toyworld.export import export
from generators.toyworld.train_prior import CHECKPOINT, FIRST_STEPS, FIRST_STEPS_N, PriorTrainer, make_pool

REPO = Path(__file__).resolve().parents[1]
TRAINING = REPO / "generators" / "models" / "toy" / "weights" / "training"
DATA_ROOT = REPO / ".cache" / "toyworld" / "data"
REL = 1e-5  # bit-identical on one machine; the slack covers other CPUs' float kernels

def as_json(obj):
    return json.loads(json.dumps(obj))


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads((TRAINING / FIRST_STEPS).read_text())


@pytest.fixture(scope="module")
def recipe_pool():
    """The recipe's data pool (chunks load, or render into the shared cache, on first use) and key."""
    return make_pool(DATA_ROOT, PriorTrainConfig(), WorldConfig(), log=lambda m: None)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet(out: Path, pool, cfg: PriorTrainConfig, key: str = "") -> PriorTrainer:
    return PriorTrainer(out, pool, PriorNetConfig(), cfg, pool_key=key, log=lambda m: None)


def test_the_committed_record_is_of_the_current_recipe(committed, recipe_pool):
    _, key = recipe_pool
    run = json.loads((TRAINING / "run.json").read_text())
    assert run["net"] == as_json(asdict(PriorNetConfig()))
    assert run["train"] == as_json(asdict(PriorTrainConfig()))
    assert run["world"] == as_json(asdict(WorldConfig()))
    assert committed["pool_key"] == run["pool_key"] == key
    assert committed["steps"] == list(range(1, FIRST_STEPS_N + 1)) and len(committed["losses"]) == FIRST_STEPS_N
    assert committed["threads"] == 1 and committed["seed"] == PriorTrainConfig().seed


@pytest.mark.slow  # ~15 s with the data cached; rendering the 4 first chunks adds ~50 s on a 2-core machine
def test_retraining_the_recipe_reproduces_the_committed_first_losses(tmp_path, committed, recipe_pool, one_thread):
    pool, key = recipe_pool
    cfg = PriorTrainConfig()
    trainer = quiet(tmp_path / "run", pool, cfg, key)
    losses = trainer.run(len(committed["steps"]))
    assert losses == pytest.approx(committed["losses"], rel=REL, abs=0)
    # the trainer writes the same record itself (export copies it into training/)
    record = json.loads((tmp_path / "run" / FIRST_STEPS).read_text())
    assert record["losses"] == losses and record["steps"] == committed["steps"]
    assert record["threads"] == 1 and record["pool_key"] == key
    # the comparison can fail: another seed (weights and draws) gives another first loss
    other = quiet(tmp_path / "seed", pool, dataclasses.replace(cfg, seed=cfg.seed + 1), key).run(1)
    assert other[0] != pytest.approx(committed["losses"][0], rel=100 * REL, abs=0)


# -- the record's bookkeeping, on a small pool -------------------------------------------------------


@pytest.fixture(scope="module")
def small_pool():
    return render_chunk(16, seed=5, world=WorldConfig(), scenes=SceneSampling(p_one=0.5))


def small_recipe() -> PriorTrainConfig:
    return dataclasses.replace(PriorTrainConfig(), batch_size=4, log_every=1)


def test_a_stopped_and_resumed_run_records_the_same_first_steps(tmp_path, small_pool, one_thread):
    whole = quiet(tmp_path / "whole", small_pool, small_recipe())
    losses = whole.run(FIRST_STEPS_N + 1)
    record = json.loads((tmp_path / "whole" / FIRST_STEPS).read_text())
    assert record["losses"] == losses[:FIRST_STEPS_N] and record["steps"] == list(range(1, FIRST_STEPS_N + 1))
    part = quiet(tmp_path / "part", small_pool, small_recipe())
    part.run(1)
    assert json.loads((tmp_path / "part" / FIRST_STEPS).read_text())["losses"] == losses[:1]
    resumed = quiet(tmp_path / "part", small_pool, small_recipe())
    resumed.load()
    resumed.run(FIRST_STEPS_N + 1)
    assert json.loads((tmp_path / "part" / FIRST_STEPS).read_text()) == record


def test_a_checkpoint_from_before_the_record_resumes_without_one(tmp_path, small_pool, one_thread):
    quiet(tmp_path / "run", small_pool, small_recipe()).run(1)
    ck = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    for k in ("first_losses", "first_threads"):
        del ck[k]  # the format of checkpoints written before the record existed
    torch.save(ck, tmp_path / "run" / CHECKPOINT)
    (tmp_path / "run" / FIRST_STEPS).unlink()
    resumed = quiet(tmp_path / "run", small_pool, small_recipe())
    resumed.load()
    assert resumed.step == 1 and resumed.first_losses is None
    resumed.run(FIRST_STEPS_N)
    assert not (tmp_path / "run" / FIRST_STEPS).exists()  # steps 2..3 alone are no first-step record


def test_export_copies_the_record_and_keeps_it_for_a_run_without_one(tmp_path, small_pool, one_thread):
    run = tmp_path / "run"
    quiet(run, small_pool, small_recipe()).run(FIRST_STEPS_N)
    recipe = {"net": as_json(asdict(PriorNetConfig())), "train": as_json(asdict(small_recipe())),
              "world": as_json(asdict(WorldConfig())), "pool_key": ""}
    (run / "run.json").write_text(json.dumps({"command": "a", **recipe}))
    out = export(run, tmp_path / "weights")
    record = (run / FIRST_STEPS).read_text()
    assert (out / "training" / FIRST_STEPS).read_text() == record
    # a run without the record (resumed from an old checkpoint) keeps the previous export's ...
    (run / FIRST_STEPS).unlink()
    (run / "run.json").write_text(json.dumps({"command": "b", **recipe}))
    export(run, out)
    assert (out / "training" / FIRST_STEPS).read_text() == record
    # ... but not when the recipe changed
    (run / "run.json").write_text(json.dumps({"command": "c", **recipe, "pool_key": "other"}))
    export(run, out)
    assert not (out / "training" / FIRST_STEPS).exists()
