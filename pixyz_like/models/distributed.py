r"""Data-parallel training on :mod:`torch.distributed` (one process per device, launched by ``torchrun``).

:meth:`Model.fit <pixyz_like.models.Model.fit>` runs unchanged under ``torchrun``: when a process group
is initialised (:func:`init_distributed`) and has more than one process, ``fit``

* gives each process its own shard of the data: a map-style loader without a
  :class:`~torch.utils.data.distributed.DistributedSampler` is rebuilt with one
  (:func:`shard_loader`), and ``sampler.set_epoch(epoch)`` is called at every epoch;
* starts every process from rank 0's parameters and buffers (:func:`broadcast_state`);
* averages gradients across processes after the backward pass(es) and before clipping and the
  optimizer step, with one ``all_reduce`` per step over all gradients flattened into one buffer
  (:func:`all_reduce_gradients`). We all-reduce explicitly instead of wrapping modules in
  :class:`~torch.nn.parallel.DistributedDataParallel`: a loss calls its distributions directly,
  not through one wrapper's ``forward``, so there is no single module to wrap. The maths is DDP's:
  with :math:`W` processes and per-process mean losses :math:`L_r`, each process steps with
  :math:`\frac1W \sum_r \nabla L_r`, the gradient of the mean loss over the global batch;
* writes checkpoints and logs (TensorBoard, progress bar) from rank 0 only; a checkpoint holds the
  random states of every rank, so resuming with the same number of processes is exact.

Launch on one machine with two processes (CPU: gloo; GPU: NCCL, one GPU per process)::

    torchrun --standalone --nproc_per_node=2 train.py

and on several machines (here 2 machines x 4 GPUs) run on *each* machine::

    torchrun --nnodes=2 --nproc_per_node=4 --node_rank=<0 or 1> \
             --master_addr=<address of machine 0> --master_port=29500 train.py

where ``train.py`` calls :func:`init_distributed` before building the model::

    device = init_distributed()            # reads RANK, WORLD_SIZE, LOCAL_RANK set by torchrun
    model = VAE(q, p, ..., device=device)
    model.fit(loader, epochs=10, checkpoint="ckpt.pt")   # same call as on one process
    cleanup_distributed()

Machine 0 must be reachable from the others on ``master_port``; the checkpoint path must be on a
file system every machine can read to resume (or copied to each machine). ``batch_size`` of the
loader is per process: the global batch is ``batch_size * world_size``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, RandomSampler
from torch.utils.data.distributed import DistributedSampler

__all__ = [
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "shard_loader",
    "broadcast_state",
    "all_reduce_gradients",
    "all_reduce_sum",
    "averaged_before_steps",
    "shard",
]


def is_distributed() -> bool:
    """Whether a process group with more than one process is initialised.

    >>> is_distributed()
    False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 outside a process group).

    >>> get_rank()
    0
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes (1 outside a process group).

    >>> get_world_size()
    1
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process is rank 0, the one that writes checkpoints and logs.

    >>> is_main_process()
    True
    """
    return get_rank() == 0


def init_distributed(backend: str | None = None) -> torch.device:
    """Initialise the default process group from the environment ``torchrun`` sets; return the device.

    ``backend`` defaults to ``"nccl"`` when CUDA is available and ``"gloo"`` otherwise. On CUDA each
    process uses the GPU numbered by ``LOCAL_RANK``. Without ``RANK``/``WORLD_SIZE`` in the
    environment (a plain ``python train.py``) nothing is initialised and the single-process device
    is returned, so one script serves both cases.

    >>> os.environ.get("WORLD_SIZE") is None and init_distributed().type in ("cpu", "cuda")
    True
    """
    use_cuda = torch.cuda.is_available()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return torch.device("cuda" if use_cuda else "cpu")
    backend = backend or ("nccl" if use_cuda else "gloo")
    device = torch.device("cpu")
    if use_cuda and backend == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device


def cleanup_distributed() -> None:
    """Destroy the default process group if one is initialised (call at the end of a script).

    >>> cleanup_distributed()  # a no-op outside torchrun
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_loader(loader: DataLoader, seed: int = 0) -> DataLoader:
    """The same loader with a :class:`DistributedSampler`, so each process reads its own shard.

    A loader that shuffled (a :class:`~torch.utils.data.RandomSampler`) shuffles with the sampler's
    ``seed`` and the epoch (``set_epoch``), identically on all processes, then each process takes
    every ``world_size``-th index starting at its rank. A loader that already has a
    ``DistributedSampler``, or reads an :class:`~torch.utils.data.IterableDataset` (which must shard
    itself), is returned unchanged. Outside a process group the loader is returned unchanged.

    >>> from torch.utils.data import TensorDataset
    >>> loader = DataLoader(TensorDataset(torch.zeros(8, 2)), batch_size=4)
    >>> shard_loader(loader) is loader   # not distributed here
    True
    """
    if not is_distributed() or isinstance(loader.sampler, DistributedSampler):
        return loader
    if isinstance(loader.dataset, IterableDataset):
        warnings.warn(
            "fit(): the loader reads an IterableDataset, which fit cannot shard; make sure each process "
            "reads different data",
            stacklevel=3,
        )
        return loader
    if loader.batch_size is None:
        raise ValueError(
            "fit(): cannot shard a DataLoader built with a custom batch_sampler across processes; give it a "
            "DistributedSampler yourself"
        )
    sampler: DistributedSampler[Any] = DistributedSampler(loader.dataset, shuffle=isinstance(loader.sampler,
                                                                                             RandomSampler), seed=seed)
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


def shard(loader: Any) -> Any:
    """:func:`shard_loader` applied to a loader, or to each loader of a
    :class:`~pixyz_like.models.batches.ZipLoader`; any other iterable (a list of batches) unchanged.

    >>> shard([{"x": torch.zeros(2)}])   # not distributed here
    [{'x': tensor([0., 0.])}]
    """
    from .batches import ZipLoader

    if not is_distributed():
        return loader
    if isinstance(loader, ZipLoader):
        return loader.with_loaders([shard(part) for part in loader.loaders])
    return shard_loader(loader) if isinstance(loader, DataLoader) else loader


def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers to every process (so all start identical).

    >>> broadcast_state(torch.nn.Linear(2, 2))  # a no-op outside a process group
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def all_reduce_gradients(params: Any) -> None:
    r"""Replace each gradient by its mean over processes, :math:`g \leftarrow \frac1W\sum_r g_r`.

    All gradients of one dtype and device are flattened into one buffer and reduced with one
    ``all_reduce`` (many small collectives cost far more than one large one). A parameter without a
    gradient on this process counts as a zero gradient, so all processes issue the same collectives.

    >>> p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.full((2,), 3.0)
    >>> all_reduce_gradients([p]); p.grad   # one process: unchanged
    tensor([3., 3.])
    """
    if not is_distributed():
        return
    world = dist.get_world_size()
    groups: dict[tuple[torch.dtype, torch.device], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    present: dict[int, bool] = {}
    for p in params:
        if not p.requires_grad:
            continue
        present[id(p)] = p.grad is not None
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grad = p.grad
        groups.setdefault((grad.dtype, grad.device), []).append((p, grad))
    for (dtype, device), pairs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        # One flag per parameter rides along: a parameter no process computed a gradient for gets
        # its gradient back to None, so the optimizer skips it as it would on one process.
        flags = torch.tensor([float(present[id(p)]) for p, _ in pairs], dtype=dtype, device=device)
        flat = torch.cat([g.reshape(-1) for _, g in pairs] + [flags])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        any_grad = (flat[-len(pairs) :] > 0).tolist()
        offset = 0
        for (p, g), has_grad in zip(pairs, any_grad, strict=True):
            n = g.numel()
            if has_grad:
                g.copy_(flat[offset : offset + n].view_as(g))
            else:
                p.grad = None
            offset += n


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes (a copy; the input is untouched). Identity outside a process group.

    >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
    tensor([1., 2.])
    """
    values = values.detach().clone()
    if is_distributed():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


@contextlib.contextmanager
def averaged_before_steps(optimizers: Iterable[torch.optim.Optimizer]) -> Iterator[None]:
    """Average the gradients over processes just before each step of these optimizers, in the block.

    For models whose own ``train`` steps their optimizers (a GAN's critic and generator): ``fit``
    cannot all-reduce between their backward passes and steps, so each optimizer does it itself.
    Outside a process group nothing is registered.

    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    >>> with averaged_before_steps([opt]):
    ...     pass
    """
    handles = []
    if is_distributed():
        for opt in optimizers:

            def pre_hook(o: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
                all_reduce_gradients([p for g in o.param_groups for p in g["params"]])

            handles.append(opt.register_step_pre_hook(pre_hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
