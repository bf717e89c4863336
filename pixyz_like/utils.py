"""Pixyz's ``pixyz.utils``: the helpers Pixyz programs import (dict helpers, ``tolist``, ``epsilon``, the
cache settings that size nothing here, ``print_latex``, ``convert_latex_name``).

The library's own helpers live where their names say: names and numbers as LaTeX in
:mod:`pixyz_like._latex`, notebook display in :mod:`pixyz_like._display`, option checks in
:mod:`pixyz_like._options`, the batch dimension in :mod:`pixyz_like._batch`. They are re-exported here
because this module was their home before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ._batch import infer_batch_n, repeat_batch
from ._display import print_latex
from ._latex import convert_latex_name, float_latex, format_number, latex_to_tag
from ._options import check_options

__all__ = [
    "tolist",
    "convert_latex_name",
    "print_latex",
    "latex_to_tag",
    "check_options",
    "format_number",
    "float_latex",
    "infer_batch_n",
    "repeat_batch",
    # Pixyz's pixyz.utils helpers
    "get_dict_values",
    "delete_dict_values",
    "detach_dict",
    "replace_dict_keys",
    "replace_dict_keys_split",
    "sum_samples",
    "epsilon",
    "set_epsilon",
    "FrozenSampleDict",
    "lru_cache_for_sample_dict",
    "set_cache_maxsize",
    "cache_maxsize",
]


def tolist(a: Any) -> list:
    """Return ``a`` as a list: a string or other scalar becomes a one-element list.

    >>> tolist("x"), tolist(("x", "z")), tolist(None)
    (['x'], ['x', 'z'], [])
    """
    if a is None:
        return []
    if isinstance(a, str):
        return [a]
    if isinstance(a, Iterable):
        return list(a)
    return [a]


_EPSILON = 1e-07
_CACHE_MAXSIZE = 20


def set_epsilon(eps: float) -> None:
    """Set the small constant that flows add for numerical safety (Pixyz's ``set_epsilon``).

    It is a setting, read when a flow that takes an ``eps`` is built without one; flows built
    before the call keep the value they were built with.

    >>> old = epsilon()
    >>> set_epsilon(1e-6); epsilon()
    1e-06
    >>> set_epsilon(old)
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0 or eps == float("inf"):
        raise ValueError(f"set_epsilon: eps must be a finite non-negative number, got {eps!r}")
    global _EPSILON
    _EPSILON = float(eps)


def epsilon() -> float:
    """The small constant flows add for numerical safety (``1e-7`` unless :func:`set_epsilon` changed it).

    >>> epsilon()
    1e-07
    """
    return _EPSILON


def set_cache_maxsize(cache_maxsize: int) -> None:
    """Accepted for Pixyz programs; pixyz_like keeps no cache, so the value sizes nothing.

    Pixyz memoised distribution parameters in a process-wide LRU cache of this size, keyed on tensor
    identity, which went stale (see ``docs/pixyz.md``). pixyz_like memoises only within one
    evaluation, so there is nothing to size; the value is stored and reported by :func:`cache_maxsize`.

    >>> set_cache_maxsize(100); cache_maxsize()
    100
    >>> set_cache_maxsize(20)
    """
    if isinstance(cache_maxsize, bool) or not isinstance(cache_maxsize, int) or cache_maxsize < 0:
        raise ValueError(f"set_cache_maxsize: expected a non-negative int, got {cache_maxsize!r}")
    global _CACHE_MAXSIZE
    _CACHE_MAXSIZE = cache_maxsize


def cache_maxsize() -> int:
    """The value last given to :func:`set_cache_maxsize` (nothing in pixyz_like reads it).

    >>> cache_maxsize()
    20
    """
    return _CACHE_MAXSIZE


def get_dict_values(dicts: Mapping[str, Any], keys: Iterable[str], return_dict: bool = False) -> Any:
    """The values of ``dicts`` under ``keys`` (absent keys skipped), as a list or, with ``return_dict``, a dict.

    >>> get_dict_values({"a": 1, "b": 2, "c": 3}, ["c", "a"])
    [3, 1]
    >>> get_dict_values({"a": 1, "b": 2}, ["b", "z"], return_dict=True)
    {'b': 2}
    """
    found = {k: dicts[k] for k in tolist(keys) if k in dicts}
    return found if return_dict else list(found.values())


def delete_dict_values(dicts: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """A copy of ``dicts`` without ``keys``.

    >>> delete_dict_values({"a": 1, "b": 2, "c": 3}, ["a", "z"])
    {'b': 2, 'c': 3}
    """
    drop = set(tolist(keys))
    return {k: v for k, v in dicts.items() if k not in drop}


def detach_dict(dicts: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``dicts`` with every tensor detached from the graph (other values kept as they are).

    >>> w = torch.ones(2, requires_grad=True)
    >>> detach_dict({"x": w * 2, "n": 3})["x"].requires_grad
    False
    """
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in dicts.items()}


def replace_dict_keys(dicts: Mapping[str, Any], replace_list_dict: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``dicts`` with the keys renamed by ``replace_list_dict`` (``{old: new}``); order kept.

    >>> replace_dict_keys({"a": 1, "b": 2, "c": 3}, {"b": "y", "q": "r"})
    {'a': 1, 'y': 2, 'c': 3}
    """
    return {replace_list_dict.get(k, k): v for k, v in dicts.items()}


def replace_dict_keys_split(
    dicts: Mapping[str, Any], replace_list_dict: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``dicts`` into ``(renamed entries, the rest)``: the entries whose key ``replace_list_dict`` renames.

    >>> replace_dict_keys_split({"a": 0, "b": 1}, {"a": "loc"})
    ({'loc': 0}, {'b': 1})
    """
    renamed = {replace_list_dict[k]: v for k, v in dicts.items() if k in replace_list_dict}
    rest = {k: v for k, v in dicts.items() if k not in replace_list_dict}
    return renamed, rest


def sum_samples(samples: torch.Tensor, sum_dims: Iterable[int] | None = None) -> torch.Tensor:
    """Sum ``samples`` over ``sum_dims``, by default over every dimension but the first.

    >>> sum_samples(torch.ones(2, 3, 4)).tolist(), sum_samples(torch.ones(2)).shape
    ([12.0, 12.0], torch.Size([2]))
    >>> sum_samples(torch.ones(2, 3), sum_dims=[0]).tolist()
    [2.0, 2.0, 2.0]
    """
    if sum_dims is not None:
        dims = list(sum_dims)
        return samples.sum(dim=dims) if dims else samples
    if samples.dim() <= 1:
        return samples
    return samples.sum(dim=tuple(range(1, samples.dim())))


class FrozenSampleDict:
    """A hashable, read-only view of a dict of samples (Pixyz used it as an LRU-cache key).

    Two frozen dicts are equal when they have the same keys and equal values (tensors compared
    element-wise); the hash combines the keys with the values' identities, as Pixyz's did.

    >>> x = torch.zeros(2)
    >>> FrozenSampleDict({"x": x}) == FrozenSampleDict({"x": torch.zeros(2)})
    True
    >>> len({FrozenSampleDict({"x": x}), FrozenSampleDict({"x": x})})
    1
    """

    def __init__(self, dict_: Mapping[str, Any]) -> None:
        self.dict = dict(dict_)

    def __hash__(self) -> int:
        return hash(tuple((k, id(v) if isinstance(v, torch.Tensor) else hash(v)) for k, v in self.dict.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrozenSampleDict) or self.dict.keys() != other.dict.keys():
            return False
        for k, v in self.dict.items():
            w = other.dict[k]
            if isinstance(v, torch.Tensor) or isinstance(w, torch.Tensor):
                if not (isinstance(v, torch.Tensor) and isinstance(w, torch.Tensor)):
                    return False
                if v.shape != w.shape or not bool(torch.equal(v, w)):
                    return False
            elif v != w:
                return False
        return True

    def __repr__(self) -> str:
        return f"FrozenSampleDict({self.dict!r})"


def lru_cache_for_sample_dict() -> Any:
    """Accepted for Pixyz programs: returns a decorator that leaves the function as it is.

    Pixyz's decorator memoised results across calls in a global cache keyed on tensor identity, which
    returned stale values after an in-place change and broke a second backward pass (see
    ``docs/pixyz.md``). pixyz_like keeps no cache between calls, so the decorated function runs on
    every call and always sees the current values.

    >>> calls = []
    >>> @lru_cache_for_sample_dict()
    ... def f(x_dict):
    ...     calls.append(1)
    ...     return x_dict["x"] * 2
    >>> x = torch.ones(1)
    >>> f({"x": x}).item(), f({"x": x}).item(), len(calls)
    (2.0, 2.0, 2)
    """

    def decorate(function: Any) -> Any:
        return function

    return decorate
