"""The local executor gives each worker process its own GPU, on a faked device list (no GPU needed)."""

from __future__ import annotations

import os
import time

import pytest

from harness.executors import local


def _worker_view(_: int) -> tuple[int, str | None]:
    """(pid, CUDA_VISIBLE_DEVICES) as a pool worker sees them; slow enough that every worker gets one."""
    time.sleep(0.5)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.parametrize("visible, expected", [
    ("0,1,2,3", ["0", "1", "2", "3"]),
    ("5, 7", ["5", "7"]),
    ("GPU-1a2b,GPU-3c4d", ["GPU-1a2b", "GPU-3c4d"]),  # UUIDs pass through unchanged
    ("", []),
    ("-1", []),
])
def test_visible_gpus_reads_cuda_visible_devices(monkeypatch, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert local.visible_gpus() == expected


def test_visible_gpus_counts_devices_when_nothing_is_set(monkeypatch):
    import torch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert local.visible_gpus() == ["0", "1", "2"]


def test_gpus_are_dealt_one_per_worker_then_round_robin():
    assert local.gpu_per_worker(4, ["0", "1", "2", "3"]) == ["0", "1", "2", "3"]
    assert local.gpu_per_worker(2, ["4", "5", "6"]) == ["4", "5"]
    assert local.gpu_per_worker(3, ["0", "1"]) == ["0", "1", "0"]
    assert local.gpu_per_worker(2, []) == [None, None]


def test_each_pool_worker_process_sees_only_its_own_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the faked node: two GPUs
    with local._worker_pool(workers=2, threads=1) as pool:
        seen = dict(pool.map(_worker_view, range(4)))
    assert len(seen) == 2, f"expected two worker processes, got {seen}"
    assert sorted(seen.values()) == ["3", "5"]  # one GPU each, none shared, none left unset
    assert os.getpid() not in seen and os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"  # the parent keeps its list


def test_workers_on_a_cpu_node_get_no_gpu_setting(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with local._worker_pool(workers=2, threads=1) as pool:
        seen = dict(pool.map(_worker_view, range(2)))
    assert set(seen.values()) == {""}  # inherited unchanged: nothing was assigned
