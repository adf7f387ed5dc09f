"""Schedules for any scalar of a recipe (threestudio style, made explicit).

A schedule spec is one of:
  * a number                          -> constant
  * [start_step, start_value, end_value, end_step]
                                      -> linear ramp, clamped outside [start_step, end_step]
  * {"piecewise": [[step, value], ...]} -> step function: the value of the last entry whose
                                         step <= current step (entries sorted by step)

Examples from the GaussianDreamer recipe: grad_clip = [0, 1.5, 2.0, 1000];
t_max = {"piecewise": [[0, 0.98], [501, 0.55]]} (the cap after step 500).
"""

from __future__ import annotations

from typing import Any, Union

ScheduleSpec = Union[float, int, list, tuple, dict]


class ScheduleError(ValueError):
    pass


def validate_schedule(spec: Any, name: str = "schedule") -> None:
    """Raise ScheduleError with a readable message if `spec` is not a schedule."""
    if isinstance(spec, bool):
        raise ScheduleError(f"{name}: expected a number or schedule, got a boolean")
    if isinstance(spec, (int, float)):
        return
    if isinstance(spec, (list, tuple)):
        if len(spec) != 4 or not all(isinstance(v, (int, float)) for v in spec):
            raise ScheduleError(f"{name}: a ramp is [start_step, start_value, end_value, end_step], got {spec!r}")
        if spec[3] < spec[0]:
            raise ScheduleError(f"{name}: ramp end_step {spec[3]} is before start_step {spec[0]}")
        return
    if isinstance(spec, dict) and set(spec) == {"piecewise"}:
        pts = spec["piecewise"]
        if not pts or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
            raise ScheduleError(f"{name}: piecewise needs [[step, value], ...], got {pts!r}")
        steps = [p[0] for p in pts]
        if steps != sorted(steps):
            raise ScheduleError(f"{name}: piecewise steps must be increasing, got {steps}")
        return
    raise ScheduleError(f"{name}: not a schedule: {spec!r}")


def schedule_value(spec: ScheduleSpec, step: int) -> float:
    """Value of the schedule `spec` at optimisation step `step`."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec)
    if isinstance(spec, (list, tuple)):
        s0, v0, v1, s1 = spec
        if step <= s0 or s1 == s0:
            return float(v0 if step <= s0 else v1)
        if step >= s1:
            return float(v1)
        return float(v0 + (v1 - v0) * (step - s0) / (s1 - s0))
    if isinstance(spec, dict) and "piecewise" in spec:
        value = spec["piecewise"][0][1]
        for s, v in spec["piecewise"]:
            if step >= s:
                value = v
        return float(value)
    raise ScheduleError(f"not a schedule: {spec!r}")
