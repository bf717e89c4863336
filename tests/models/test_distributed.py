"""Model.fit under torch.distributed: two processes on gloo over loopback train the quick-start VAE."""

import os
import socket
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.models import distributed as pdist

from .fit_helpers import DDP, ROOT, make_regression, regression_data

HELPER = str(ROOT / "tests" / "models" / "fit_helpers.py")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Start two workers with the environment torchrun gives its workers (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT); launching them directly spares the launcher's own Python
    process on this two-core machine. Gloo, loopback only, a free port."""
    out = tmp_path_factory.mktemp("ddp")
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": str(rank),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"}
        procs.append(subprocess.Popen([sys.executable, HELPER, "ddp", str(out)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-3000:]
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_ranks_hold_identical_parameters_and_loss_falls(two_ranks):
    _, (r0, r1) = two_ranks
    # The ranks started from different random weights (seeded by rank), saw different shards and
    # drew different noise, yet hold the same parameters: rank 0's weights were broadcast and every
    # step used the same averaged gradient.
    assert r0["vae"].keys() == r1["vae"].keys()
    for k in r0["vae"]:
        assert torch.equal(r0["vae"][k], r1["vae"][k]), k
    for r in (r0, r1):
        losses = r["losses"]
        assert len(losses) == DDP["steps"]
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # per-shard losses fall
    assert r0["losses"] != r1["losses"]  # each rank evaluated its own shard


def test_only_rank0_writes_checkpoints_and_logs(two_ranks):
    out, (r0, r1) = two_ranks
    assert r0["saves"] and not r1["saves"]
    assert set(r0["saves"]) == {str(out / "vae.pt")}
    assert len([f for f in os.listdir(out / "tb") if "tfevents" in f]) == 1
    ckpt = torch.load(out / "vae.pt", weights_only=True)
    assert ckpt["fit"]["world_size"] == 2 and len(ckpt["fit"]["rng"]) == 2  # every rank's random state
    for k, v in r0["vae"].items():
        assert torch.equal(ckpt["distributions"][k], v)


def test_two_ranks_match_one_process_with_the_same_global_batch(two_ranks):
    """Per-rank batches of 4 (rank r reads rows r, r+2, ...) average to one process's batch of 8."""
    _, (r0, r1) = two_ranks
    torch.manual_seed(0)
    single = make_regression()
    x, y = regression_data()
    hist = single.fit(DataLoader(TensorDataset(x, y), batch_size=8), epochs=2, keys=("x", "y"), progress=False)
    for k, v in single.distributions.state_dict().items():
        torch.testing.assert_close(r0["reg"][k], v, rtol=1e-5, atol=1e-6)
        assert torch.equal(r0["reg"][k], r1["reg"][k])
    # Epoch means are reduced over the processes: they are the global means.
    for a, b in zip(hist, r0["reg_history"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5)


def test_single_process_helpers_are_identity():
    assert not pdist.is_distributed() and pdist.get_world_size() == 1 and pdist.is_main_process()
    loader = DataLoader(TensorDataset(torch.zeros(4, 1)), batch_size=2, shuffle=True)
    assert pdist.shard_loader(loader) is loader
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([1.0, 2.0, 3.0])
    pdist.all_reduce_gradients([p])
    assert torch.equal(p.grad, torch.tensor([1.0, 2.0, 3.0]))
