"""`make perf`: every benchmark, each writing its JSON under results/perf/ (not tests: no pass/fail)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, whether it takes run_all's own arguments, e.g. --models / --device)
BENCHMARKS = [
    ("bench_render.py", True),
    ("bench_methods.py", True),
    ("bench_flops.py", False),  # full-size networks on the meta device: no device, no model set to choose
    ("bench_filter_agreement.py", False),  # CPU runs on the tiny and toy sets
]

if __name__ == "__main__":
    rc = 0
    for script, takes_args in BENCHMARKS:
        print(f"== {script}", flush=True)
        rc |= subprocess.call([sys.executable, str(HERE / script), *(sys.argv[1:] if takes_args else [])])
    sys.exit(rc)
