"""The prior's training tracker: judged accuracy every N steps, and the rule that says it stopped improving."""

from __future__ import annotations

import dataclasses

import pytest

from generators.toyworld.config import PriorNetConfig, PriorTrainConfig, SampleConfig, SceneSampling, WorldConfig
from generators.toyworld.data import render_chunk
from generators.toyworld.track_prior import EVAL_LOG, VERDICT, Plateau, plateau_verdict, read_log, track
from generators.toyworld.train_prior import PriorTrainer


def _rows(values):
    return [{"step": 1000 * (i + 1), "exact_all": v} for i, v in enumerate(values)]


def test_plateau_waits_for_patience_evaluations_after_the_best():
    rule = Plateau(patience=2, min_gain=0.01)
    assert plateau_verdict(_rows([0.5, 0.6, 0.7]), rule) is None  # still rising
    assert plateau_verdict(_rows([0.5, 0.7, 0.69]), rule) is None  # one evaluation since the best
    v = plateau_verdict(_rows([0.5, 0.7, 0.69, 0.705]), rule)  # +0.005 is inside min_gain: no progress
    assert v is not None and v["best"]["step"] == 2000 and v["evaluations_since_best"] == 2
    # a gain larger than min_gain resets the count
    assert plateau_verdict(_rows([0.5, 0.7, 0.69, 0.72]), rule) is None
    assert plateau_verdict(_rows([0.7, 0.6]), rule) is None  # too few evaluations to say


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("track") / "run"
    pool = render_chunk(16, seed=3, world=WorldConfig(), scenes=SceneSampling(p_one=0.5))
    trainer = PriorTrainer(run, pool, PriorNetConfig(), dataclasses.replace(PriorTrainConfig(), batch_size=4,
                                                                              log_every=1), log=lambda m: None)
    return run, trainer


def test_track_logs_each_due_step_once_and_continues_its_log(tiny_run):
    run, trainer = tiny_run
    kw = dict(judge_dir="generators/models/toy/judge", every=2, until_step=100, rule=Plateau(patience=5),
              cfg=SampleConfig(steps=2), per_caption=1, max_two=2, poll_s=0, once=True, log=lambda m: None)
    assert track(run, **kw) is None and not (run / EVAL_LOG).exists()  # no checkpoint yet: nothing due
    trainer.run(1)
    track(run, **kw)
    rows = read_log(run / EVAL_LOG)
    assert [r["step"] for r in rows] == [1] and rows[0]["samples"] == 16 + 2
    assert 0.0 <= rows[0]["exact_all"] <= 1.0
    track(run, **kw)  # step 1 again: not due
    trainer.run(2)  # step 2 passes the next multiple of `every`
    track(run, **kw)
    assert [r["step"] for r in read_log(run / EVAL_LOG)] == [1, 2]
    assert not (run / VERDICT).exists()
    trainer.run(4)  # no evaluation can beat the best by more than 1: the second one after it is a plateau
    verdict = track(run, **(kw | {"rule": Plateau(patience=2, min_gain=1.0)}))
    assert verdict is not None and verdict["best"]["step"] == 1 and (run / VERDICT).is_file()
