"""Method presets against the recipes they name: what each baseline takes from its own code."""

from generators.methods import resolve_run_config
from generators.schedules import schedule_value


def test_sds_bridge_has_its_own_schedule_no_clamp_and_its_t_anneal():
    for models, switch in (("sd15", 240), ("toy", 80)):  # 20% of 1200 and of the toy set's 400 steps
        cfg = resolve_run_config("sds-bridge", prompt="a red apple", models=models)
        assert cfg.guidance.grad_clip is None, models  # SDS-Bridge clamps in neither stage
        assert schedule_value(cfg.guidance.t_max, switch) == 0.98, models
        assert schedule_value(cfg.guidance.t_max, switch + 1) == 0.5, models
        assert schedule_value(cfg.guidance.t_min, 0) == 0.02
    # GaussianDreamer's SDS keeps its clamp ramp and its t_max switch after step 500
    sds = resolve_run_config("sds", prompt="a red apple", models="sd15")
    assert sds.guidance.grad_clip == [0, 1.5, 2.0, 1000]
    assert (schedule_value(sds.guidance.t_max, 500), schedule_value(sds.guidance.t_max, 501)) == (0.98, 0.55)
