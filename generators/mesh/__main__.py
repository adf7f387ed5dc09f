"""python -m generators.mesh RUN_DIR... [--resolution 256] [--threshold 1.0]: export each run's mesh.

Writes mesh.ply, mesh.obj and mesh.json beside the run's gaussians.ply (kept when already made
with the same settings). Exit codes: 0 every run exported, 1 some failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from generators.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from generators.mesh.export import run_mesh
    from generators.mesh.extract import MeshExportConfig

    p = argparse.ArgumentParser(prog="python -m generators.mesh", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run directories (holding gaussians.ply)")
    p.add_argument("--resolution", type=int, default=MeshExportConfig.resolution)
    p.add_argument("--threshold", type=float, default=MeshExportConfig.threshold)
    args = p.parse_args(argv)
    cfg = MeshExportConfig(resolution=args.resolution, threshold=args.threshold)
    failed = 0
    for run in args.runs:
        try:
            _, record = run_mesh(run, cfg)
            print(json.dumps({"run": run, **{k: record[k] for k in ("vertices", "faces", "export_s")}}))
        except (UserError, OSError) as e:
            failed += 1
            print(f"error: {run}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
