r"""What ``fit`` reads from a loader: batches as dicts ``{name: tensor}``, their size, the scheduled
values added to them, and :class:`ZipLoader`, which reads several loaders as one (semi-supervised
learning: each unlabelled batch with a labelled one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .._batch import infer_batch_n
from ..errors import MissingVariableError, missing_variable_error

if TYPE_CHECKING:
    from ..losses.losses import Loss

__all__ = ["Keys", "ZipLoader", "as_dict", "batch_size", "Batches", "loaders_of"]

#: Names of the elements of tuple batches (``None`` drops one).
Keys = Sequence[str | None]


def as_dict(batch: Any, keys: Keys | None, where: str = "Model.fit()") -> dict[str, Any]:
    """A loader's item as a dict: a dict as it is, a tuple (or one tensor) named by ``keys``.

    >>> as_dict((torch.zeros(2, 3), torch.tensor([1, 0])), keys=("x", None))["x"].shape
    torch.Size([2, 3])
    """
    if isinstance(batch, Mapping):
        return dict(batch)
    if keys is None:
        raise TypeError(
            f"{where}: the loader yields {type(batch).__name__}, not a dict {{name: tensor}}; give "
            "keys=(...) naming each element, e.g. keys=('x', None) for torchvision's (image, label) pairs"
        )
    if isinstance(batch, torch.Tensor):
        batch = (batch,)
    if not isinstance(batch, (tuple, list)) or len(batch) != len(keys):
        n = len(batch) if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(f"{where}: keys={tuple(keys)} names {len(keys)} element(s) but each batch has {n}")
    return {k: v for k, v in zip(keys, batch, strict=True) if k is not None}


def batch_size(x_dict: Mapping[str, Any]) -> int:
    """The number of data points of a batch: the leading size of its first tensor with one (else 1).

    The rule is :func:`pixyz_like._batch.infer_batch_n`'s, over every entry of the batch; ``fit``
    weighs each batch's loss by this count, so a batch of scalars only counts as one data point.

    >>> batch_size({"beta": torch.tensor(0.5), "x": torch.zeros(8, 2)}), batch_size({"beta": 0.5})
    (8, 1)
    """
    n = infer_batch_n(x_dict, x_dict)
    return 1 if n is None else n


class Batches:
    """Turns loader items into the dicts the loss reads, with the checks ``fit`` promises: every
    variable of the loss present, no name both from the loader and from a schedule.

    >>> from pixyz_like.distributions import Normal
    >>> loss = -Normal(loc=0., scale=1., var=["x"]).log_prob().mean()
    >>> Batches(("x",), {}, "cpu").prepare(torch.zeros(4, 1), 0, loss, "training")["x"].shape
    torch.Size([4, 1])
    """

    def __init__(self, keys: Keys | None, schedules: Mapping[str, Callable[[int], float]],
                 device: torch.device | str | None) -> None:
        self.keys, self.schedules, self.device = keys, dict(schedules), device

    def prepare(self, batch: Any, step: int, loss: Loss, what: str) -> dict[str, Any]:
        """The batch as a dict for ``loss``, with each schedule's value at ``step``."""
        x_dict = as_dict(batch, self.keys)
        clash = sorted(set(x_dict) & set(self.schedules))
        if clash:
            raise ValueError(f"Model.fit(): {clash} come both from the loader and from schedules")
        missing = [v for v in loss.input_var if v not in x_dict and v not in self.schedules]
        if missing:
            err = missing_variable_error(f"Model.fit(): the {what} loss {loss}", "each batch", missing, x_dict)
            hint = "" if isinstance(batch, Mapping) or self.keys is None else f" (named by keys={tuple(self.keys)})"
            raise MissingVariableError(f"{err}{hint}")
        for name, schedule in self.schedules.items():
            x_dict[name] = torch.tensor(float(schedule(step)), dtype=torch.get_default_dtype(), device=self.device)
        return x_dict


class ZipLoader:
    r"""Several loaders read as one: each batch of the first loader merged with the next batch of
    each other loader, which starts over whenever it runs out (and at each pass over the first).

    The epoch is one pass over the first loader. Give this to ``Model.fit`` in place of a loader, e.g.
    semi-supervised learning (Kingma et al.'s M2) with many unlabelled and few labelled digits::

        loader = ZipLoader(unlabelled, labelled, keys=[("x_u", None), ("x", "y")])
        model.fit(loader, epochs=10)

    Args:
        first: the loader that sets the epoch's length.
        others: loaders cycled alongside it.
        keys: one ``keys`` per loader (``None`` for one that yields dicts), naming the elements of
            its tuples as ``fit``'s ``keys`` does; the names of different loaders must differ.

    Under ``torchrun``, ``fit`` shards each loader; a checkpoint holds the random state of each
    loader's sampler, so resuming is exact.

    >>> a = [(torch.zeros(2, 1),), (torch.ones(2, 1),)]
    >>> b = [(torch.full((1, 1), 5.0), torch.tensor([3]))]
    >>> [sorted(d) for d in ZipLoader(a, b, keys=[("x_u",), ("x", "y")])]
    [['x', 'x_u', 'y'], ['x', 'x_u', 'y']]
    >>> len(ZipLoader(a, b, keys=[("x_u",), ("x", "y")]))
    2
    """

    def __init__(self, first: Iterable, *others: Iterable, keys: Sequence[Keys | None] | None = None) -> None:
        self.loaders = [first, *others]
        self.keys = list(keys) if keys is not None else [None] * len(self.loaders)
        if len(self.keys) != len(self.loaders):
            raise ValueError(f"ZipLoader: {len(self.loaders)} loaders but {len(self.keys)} keys")

    def __len__(self) -> int:
        return len(self.loaders[0])  # type: ignore[arg-type]

    def with_loaders(self, loaders: Sequence[Iterable]) -> ZipLoader:
        """The same combination over other loaders (e.g. the sharded ones under ``torchrun``)."""
        return ZipLoader(*loaders, keys=self.keys)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        others = [iter(loader) for loader in self.loaders[1:]]
        for batch in self.loaders[0]:
            merged = as_dict(batch, self.keys[0], "ZipLoader")
            for i, it in enumerate(others):
                try:
                    item = next(it)
                except StopIteration:
                    others[i] = it = iter(self.loaders[i + 1])
                    try:
                        item = next(it)
                    except StopIteration:
                        raise ValueError(f"ZipLoader: loader {i + 2} yields no batch") from None
                part = as_dict(item, self.keys[i + 1], "ZipLoader")
                clash = sorted(set(part) & set(merged))
                if clash:
                    raise ValueError(f"ZipLoader: the names {clash} come from more than one loader")
                merged.update(part)
            yield merged


def loaders_of(loader: Any) -> list[Any]:
    """The loaders ``loader`` reads: itself, or those of a :class:`ZipLoader`.

    >>> len(loaders_of(ZipLoader([1], [2], keys=[("a",), ("b",)]))), loaders_of([1])
    (2, [[1]])
    """
    return list(loader.loaders) if isinstance(loader, ZipLoader) else [loader]
