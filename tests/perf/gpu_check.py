"""`make gpu-check`: the first-GPU acceptance run, in stages, within 8 minutes on one H100/H200.

    PYTHONPATH=. python tests/perf/gpu_check.py [--budget 480] [--skip-build]

Stages (expected seconds on one H100/H200 node with 16 cores; a second run reuses the builds):

  0 preflight      ~10   a CUDA GPU is visible; gsplat's toolchain is complete (gsplat_build.problems);
                         TORCH_CUDA_ARCH_LIST defaults to the GPU's own architecture (one arch: a
                         shorter compile). Without a GPU this is where it stops: exit 2 in seconds.
  1 build         ~240   in parallel: gsplat's CUDA extension (make gsplat, 3-4 min: the longest
                         part) and the two full-size random sets, fp16, one process each (30-40 s each
                         on a quiet 2-core CPU; cached under .cache/models: 0 s the second time)
  2 cuda tests     ~60   pytest -m cuda: gsplat against the dense renderer (values and gradients),
                         the trainable parts' per-step gradient on CUDA, any other CUDA-marked test
  3 sd15 methods   ~75   bench_methods on sd15-random at the paper's settings (4 views, 1024 px,
                         512 px VAE input, 100k Gaussians), bf16: sds, anchords-ipa(-filter, -finetune),
                         sds-bridge: seconds per step and peak memory
  4 sd21 methods   ~75   the same on sd21-random: sds, anchords-cn(-filter, -finetune), vsd

Each stage runs as a child process with a timeout from what is left of the budget; a stage
that fails or runs out of time is recorded and the next stage still runs if it can (stages 2-4
need stage 1's gsplat). Writes results/perf/gpu_check_cuda.json (stages, seconds, exit codes,
output tails), and through the benchmarks methods_sd15-random_cuda.json and
methods_sd21-random_cuda.json; pytest's report goes to cuda_tests_cuda.xml (JUnit).
Exit 0 only if every stage passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "perf"
SD15_METHODS = ["sds", "anchords-ipa", "anchords-ipa-filter", "anchords-ipa-finetune", "sds-bridge"]
SD21_METHODS = ["sds", "anchords-cn", "anchords-cn-filter", "anchords-cn-finetune", "vsd"]
BENCH_STEPS, BENCH_WARMUP = 5, 2  # median over the last 3 steps of each method


def _tail(text: str, n: int = 4000) -> str:
    return text[-n:] if text else ""


class Stages:
    """Runs child commands against one deadline; records each stage."""

    def __init__(self, budget_s: float, env: dict):
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        self.env = env
        self.records: list[dict] = []

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def _skipped(self, name: str, cmd, expected_s: float) -> bool:
        """No time left: the stage is recorded as skipped (the check fails) instead of started."""
        print(f"== stage {name}: SKIPPED, the {self.budget_s:.0f} s budget is spent", flush=True)
        self.records.append({"stage": name, "command": cmd, "rc": "skipped", "seconds": 0.0,
                             "expected_seconds": expected_s, "output_tail": ""})
        return False

    def run(self, name: str, cmd: list[str], expected_s: float) -> bool:
        if self.left() <= 0:
            return self._skipped(name, cmd, expected_s)
        timeout = self.left()
        print(f"== stage {name} (expected ~{expected_s:.0f} s, {timeout:.0f} s left): {' '.join(cmd)}", flush=True)
        t = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
            rc, out = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, out = "timeout", (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        seconds = time.monotonic() - t
        self.records.append({"stage": name, "command": cmd, "rc": rc, "seconds": seconds, "expected_seconds": expected_s,
                             "output_tail": _tail(out)})
        print(_tail(out, 3000), flush=True)
        print(f"== stage {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {seconds:.0f} s", flush=True)
        return rc == 0

    def parallel(self, name: str, cmds: dict[str, list[str]], expected_s: float) -> bool:
        """Several children at once (the builds); every one must succeed."""
        if self.left() <= 0:
            return self._skipped(name, cmds, expected_s)
        print(f"== stage {name} (expected ~{expected_s:.0f} s): {', '.join(cmds)} in parallel", flush=True)
        t = time.monotonic()
        procs = {k: subprocess.Popen(c, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for k, c in cmds.items()}
        ok = True
        for key, proc in procs.items():
            try:
                out, _ = proc.communicate(timeout=max(1.0, self.left()))
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                out, rc = proc.communicate()[0], "timeout"
            self.records.append({"stage": f"{name}: {key}", "command": cmds[key], "rc": rc,
                                 "seconds": time.monotonic() - t, "expected_seconds": expected_s, "output_tail": _tail(out)})
            print(_tail(out, 2000), flush=True)
            print(f"== {name}: {key} {'ok' if rc == 0 else f'FAILED ({rc})'} after {time.monotonic() - t:.0f} s", flush=True)
            ok &= rc == 0
        return ok


def preflight(env: dict) -> list[str]:
    """What stops the check before anything starts; sets TORCH_CUDA_ARCH_LIST from the GPU if unset."""
    import torch

    from generators.render.gsplat_build import probe, problems

    if not torch.cuda.is_available():
        return [f"no CUDA GPU is visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}): "
                f"make gpu-check needs one H100/H200 (or any CUDA GPU); run it on a GPU node"]
    if not env.get("TORCH_CUDA_ARCH_LIST"):
        env["TORCH_CUDA_ARCH_LIST"] = "%d.%d" % torch.cuda.get_device_capability(0)
        os.environ["TORCH_CUDA_ARCH_LIST"] = env["TORCH_CUDA_ARCH_LIST"]
    return problems(probe())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=480.0, help="seconds for all stages (default 8 minutes)")
    p.add_argument("--skip-build", action="store_true", help="stage 1 already done (gsplat and the sets are built)")
    args = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    t0 = time.monotonic()
    found = preflight(env)
    if found:
        print("error: make gpu-check cannot run here:\n" + "\n".join(f"  - {m}" for m in found), file=sys.stderr)
        return 2
    import torch

    stages = Stages(args.budget - (time.monotonic() - t0), env)
    py = sys.executable
    cores = os.cpu_count() or 4
    if not args.skip_build:
        # the compile gets most cores; the two set builds are mostly single-threaded initialisation
        build_env = {"MAX_JOBS": str(max(2, cores - 4))}
        stages.env = {**env, **build_env}
        stages.parallel("1 build", {
            "gsplat": [py, "-m", "generators.render.gsplat_build"],
            "sd15-random": [py, "-m", "generators.models.tiny", "build", "--profile", "sd15"],
            "sd21-random": [py, "-m", "generators.models.tiny", "build", "--profile", "sd21"],
        }, expected_s=240)
        stages.env = env
    stages.run("2 cuda tests", [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "--timeout=300",
                                f"--junitxml={OUT / 'cuda_tests_cuda.xml'}", "tests/"], expected_s=60)
    for label, models, methods in (("3 sd15 methods", "sd15-random", SD15_METHODS),
                                   ("4 sd21 methods", "sd21-random", SD21_METHODS)):
        stages.run(label, [py, "tests/perf/bench_methods.py", "--models", models, "--device", "cuda", "--methods",
                           ",".join(methods), "--steps", str(BENCH_STEPS), "--warmup", str(BENCH_WARMUP), "--rounds", "0",
                           "--precision", "bf16"], expected_s=75)
    from generators.io import atomic_write_json

    ok = all(r["rc"] == 0 for r in stages.records)
    atomic_write_json(OUT / "gpu_check_cuda.json", {
        "command": "make gpu-check", "device": torch.cuda.get_device_name(0), "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "arch_list": env.get("TORCH_CUDA_ARCH_LIST"),
        "precision": "bf16",
        "budget_seconds": args.budget, "total_seconds": time.monotonic() - t0, "passed": ok, "stages": stages.records,
    })
    print(f"make gpu-check: {'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.0f} s; results/perf/gpu_check_cuda.json")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
