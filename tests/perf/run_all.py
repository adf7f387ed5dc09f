"""`make perf`: every benchmark, each writing its JSON under results/perf/ (not tests: no pass/fail)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    rc = 0
    for script in ("bench_render.py", "bench_methods.py"):
        print(f"== {script}", flush=True)
        rc |= subprocess.call([sys.executable, str(HERE / script), *sys.argv[1:]])
    sys.exit(rc)
