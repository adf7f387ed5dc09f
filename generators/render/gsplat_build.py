"""Build gsplat's CUDA extension once, into a folder a cluster can share (`make gsplat`).

    python -m generators.render.gsplat_build            # check, build, smoke-test on the GPU if one is visible
    python -m generators.render.gsplat_build --check    # only say what is missing (seconds)

gsplat compiles its CUDA code on first import (torch's JIT extension builder) into
$TORCH_EXTENSIONS_DIR/<python>_<cuda>/gsplat_cuda. Every process of ours points that variable
at one folder (extensions_dir(): $TORCH_EXTENSIONS_DIR if set, else <repo>/.cache/torch_extensions)
before importing gsplat, so one build serves every later run and every node that sees the folder;
a finished build is loaded, never rebuilt.

Before compiling for minutes, the checks below fail in seconds with what is missing: a CUDA
build of torch, nvcc, a CUDA toolkit whose major version matches torch's (torch refuses to build
across majors), and the GPU architectures to compile for (TORCH_CUDA_ARCH_LIST, or a visible GPU
to read it from). Exit 2 names each problem; exit 1 means the build itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
STAMP = "anchords_gsplat_build.json"


def extensions_dir() -> Path:
    """Where torch's JIT extensions (gsplat's) are built and found: $TORCH_EXTENSIONS_DIR, else the repo cache."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "torch_extensions"


def use_shared_extensions_dir() -> Path:
    """Point torch's extension builder at extensions_dir() (before gsplat is first imported)."""
    folder = extensions_dir()
    os.environ["TORCH_EXTENSIONS_DIR"] = str(folder)
    return folder


@dataclass
class Toolchain:
    """What a gsplat build needs, as found on this machine."""

    torch_version: str
    torch_cuda: Optional[str]  # torch.version.cuda; None for a CPU-only build of torch
    nvcc: Optional[str]  # path of nvcc, None if not found
    nvcc_cuda: Optional[str]  # "12.4" from `nvcc --version`
    arch_list: Optional[str]  # TORCH_CUDA_ARCH_LIST
    gpu_capabilities: list[str]  # "9.0" per visible GPU


def find_nvcc() -> Optional[str]:
    """nvcc as torch's builder finds it: $CUDA_HOME/bin, $CUDA_PATH/bin, PATH, /usr/local/cuda/bin."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home:
            candidate = Path(home) / "bin" / "nvcc"
            return str(candidate) if candidate.is_file() else None  # an explicit home that lacks nvcc
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def nvcc_cuda_version(nvcc: str) -> Optional[str]:
    """'13.0' from nvcc's 'Cuda compilation tools, release 13.0, V13.0.88'."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def probe() -> Toolchain:
    import torch

    nvcc = find_nvcc()
    caps = []
    if torch.cuda.is_available():
        caps = ["%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    return Toolchain(torch_version=torch.__version__, torch_cuda=torch.version.cuda, nvcc=nvcc,
                     nvcc_cuda=nvcc_cuda_version(nvcc) if nvcc else None,
                     arch_list=os.environ.get("TORCH_CUDA_ARCH_LIST") or None, gpu_capabilities=caps)


def problems(tc: Toolchain) -> list[str]:
    """Everything that would make the build fail, each with what to do; empty if it can start."""
    found = []
    if tc.torch_cuda is None:
        found.append(f"torch {tc.torch_version} is a CPU-only build: install a CUDA build of torch "
                     f"(constraints.txt pins the version; pick the wheel for your CUDA driver)")
    if tc.nvcc is None:
        want = f" {tc.torch_cuda}" if tc.torch_cuda else ""
        found.append(f"no nvcc (CUDA compiler) found in $CUDA_HOME/bin, on PATH or in /usr/local/cuda/bin: install the "
                     f"CUDA toolkit{want} (e.g. `module load cuda/{tc.torch_cuda or '<version>'}` on a cluster) or set CUDA_HOME")
    elif tc.nvcc_cuda is None:
        found.append(f"could not read the CUDA version of {tc.nvcc} (`nvcc --version`)")
    elif tc.torch_cuda and tc.nvcc_cuda.split(".")[0] != tc.torch_cuda.split(".")[0]:
        found.append(f"CUDA toolkit {tc.nvcc_cuda} ({tc.nvcc}) does not match torch's CUDA {tc.torch_cuda}: torch "
                     f"builds extensions only with the same major version; load CUDA {tc.torch_cuda} or set CUDA_HOME to it")
    if not tc.arch_list and not tc.gpu_capabilities:
        found.append("no GPU architecture to compile for: no GPU is visible and TORCH_CUDA_ARCH_LIST is unset; set it, "
                     "e.g. TORCH_CUDA_ARCH_LIST=\"9.0\" for H100/H200, \"8.0\" for A100, \"8.0;9.0\" for both")
    return found


def _smoke_test() -> str:
    """Rasterise 64 Gaussians into one 32 px view on the GPU: the built extension works."""
    import torch
    from gsplat import rasterization

    gen = torch.Generator().manual_seed(0)
    n = 64
    means = (torch.rand(n, 3, generator=gen) - 0.5).cuda()
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1).cuda()
    scales = torch.full((n, 3), 0.05).cuda()
    opacities = torch.full((n,), 0.8).cuda()
    colors = torch.rand(n, 3, generator=gen).cuda()
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 3.0  # camera 3 units in front of the Gaussians
    Ks = torch.tensor([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]])
    img, alpha, _ = rasterization(means, quats, scales, opacities, colors, viewmats.cuda(), Ks.cuda(), 32, 32)
    torch.cuda.synchronize()
    if not (alpha.max() > 0.1 and torch.isfinite(img).all()):
        raise RuntimeError(f"gsplat rendered nothing (max alpha {alpha.max().item():.3g})")
    return f"rendered 1 view of {n} Gaussians, max alpha {alpha.max().item():.2f}"


def build() -> dict:
    """Compile (or find) gsplat's extension in the shared folder; the record written beside it."""
    folder = use_shared_extensions_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MAX_JOBS", str(max(1, min(os.cpu_count() or 1, 16))))
    t0 = time.perf_counter()
    from gsplat.cuda import _backend

    if _backend._C is None:
        raise RuntimeError("gsplat did not build its CUDA extension (see the compiler output above)")
    import gsplat
    import torch

    record = {"gsplat": gsplat.__version__, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
              "arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST"), "build_or_load_seconds": time.perf_counter() - t0,
              "extensions_dir": str(folder)}
    if torch.cuda.is_available():
        record["smoke_test"] = _smoke_test()
    (folder / STAMP).write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m generators.render.gsplat_build", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only check the toolchain (no build)")
    args = p.parse_args(argv)
    tc = probe()
    found = problems(tc)
    print(f"gsplat build: torch {tc.torch_version} (CUDA {tc.torch_cuda}), nvcc {tc.nvcc} ({tc.nvcc_cuda}), "
          f"TORCH_CUDA_ARCH_LIST={tc.arch_list}, GPUs {tc.gpu_capabilities or 'none'}, into {extensions_dir()}", flush=True)
    if found:
        print("error: cannot build gsplat's CUDA extension:\n" + "\n".join(f"  - {m}" for m in found), file=sys.stderr)
        return 2
    if args.check:
        print("gsplat build: the toolchain is complete")
        return 0
    try:
        record = build()
    except Exception as e:  # the compiler's own output is above; say what failed last
        print(f"error: gsplat build failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"gsplat build: ready in {record['extensions_dir']} ({record['build_or_load_seconds']:.0f} s)"
          + (f"; {record['smoke_test']}" if "smoke_test" in record else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
