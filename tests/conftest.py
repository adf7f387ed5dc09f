"""Test-wide settings.

The tests run tiny networks and small renders, where torch's intra-op threads cost more than they
give (and thrash a shared 2-core machine): one thread for the whole session, unless
ANCHORDS_TEST_THREADS says otherwise. Nothing here touches the hub: HF_HUB_OFFLINE=1.
"""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("ANCHORDS_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """An empty Hugging Face home, offline: tests write a hand-made hub cache into it."""
    home = tmp_path / "hf_home"
    (home / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home
