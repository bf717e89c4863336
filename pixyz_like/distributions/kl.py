r"""Closed-form Kullback-Leibler divergences between parametric families.

``kl_elementwise(p, params_p, q, params_q)`` returns :math:`D_{KL}[p\|q]` elementwise (before summing
features). Pairs written out here use their formula directly; any other pair falls back to
:func:`torch.distributions.kl_divergence` on the equivalent torch objects. The table below is a fixed
registry filled at import time, not a cache.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import torch

from ..errors import NotDefinedError
from .distributions import DistributionBase

__all__ = ["register_kl", "kl_elementwise", "has_closed_form_kl", "closed_form_kl"]

_Params = dict[str, torch.Tensor]
_KLFormula = Callable[[_Params, _Params], torch.Tensor]
_F = TypeVar("_F", bound=_KLFormula)
_KL_TABLE: dict[tuple[type, type], _KLFormula] = {}


def register_kl(type_p: type, type_q: type) -> Callable[[_F], _F]:
    """Decorator registering a closed form ``f(params_p, params_q) -> Tensor`` for a pair of families.

    The function receives the two parameter dicts and returns the KL elementwise (before the
    features are summed). Subclasses of the registered classes use it too.

    >>> from pixyz_like.distributions import Normal
    >>> class UnitNormal(Normal):  # a family with unit scale, KL = (mu_p - mu_q)^2 / 2
    ...     pass
    >>> @register_kl(UnitNormal, UnitNormal)
    ... def _kl_unit(p, q):
    ...     return 0.5 * (p["loc"] - q["loc"]) ** 2
    >>> a = UnitNormal(loc=torch.zeros(1), scale=1., var=["x"])
    >>> b = UnitNormal(loc=torch.full((1,), 2.), scale=1., var=["x"])
    >>> kl_elementwise(a, a.get_params(), b, b.get_params())
    tensor([[2.]])
    """

    def decorate(fn: _F) -> _F:
        _KL_TABLE[(type_p, type_q)] = fn
        return fn

    return decorate


def _lookup(p: DistributionBase, q: DistributionBase) -> _KLFormula | None:
    # Walk both MROs so a user's subclass of Normal (an encoder) uses Normal's formula.
    for tp in type(p).__mro__:
        for tq in type(q).__mro__:
            fn = _KL_TABLE.get((tp, tq))
            if fn is not None:
                return fn
    return None


def has_closed_form_kl(p: object, q: object) -> bool:
    """Whether ``D_KL[p||q]`` has a closed form (ours or torch's) for these two distributions.

    >>> from pixyz_like.distributions import Categorical, Normal
    >>> n = Normal(loc=0., scale=1., var=["x"])
    >>> has_closed_form_kl(n, n), has_closed_form_kl(n, Categorical(probs=[0.5, 0.5], var=["x"]))
    (True, False)
    """
    return closed_form_kl(p, q) is not None


def closed_form_kl(p: object, q: object) -> _KLFormula | None:
    r"""The closed form ``f(params_p, params_q)`` of ``D_KL[p||q]`` for these two families, or ``None``.

    Found once (the class hierarchies are walked here, not on each use): a formula registered with
    :func:`register_kl` for the pair, else torch's :func:`~torch.distributions.kl_divergence` on
    the equivalent torch objects when torch knows the pair. The formula returns the KL elementwise
    (before the features are summed).

    >>> from pixyz_like.distributions import Categorical, Normal
    >>> p = Normal(loc=torch.zeros(2), scale=1., var=["z"])
    >>> q = Normal(loc=torch.ones(2), scale=1., var=["z"])
    >>> kl = closed_form_kl(p, q)
    >>> kl(p.get_params(), q.get_params())
    tensor([[0.5000, 0.5000]])
    >>> closed_form_kl(p, Categorical(probs=[0.5, 0.5], var=["z"])) is None
    True
    """
    if not (isinstance(p, DistributionBase) and isinstance(q, DistributionBase)):
        return None
    fn = _lookup(p, q)
    if fn is not None:
        return fn
    tp, tq = p.distribution_torch_class, q.distribution_torch_class
    if tp is None or tq is None:
        return None
    if any(issubclass(tp, a) and issubclass(tq, b) for (a, b) in torch.distributions.kl._KL_REGISTRY):
        return partial(_torch_kl, p, q)
    return None


def _torch_kl(p: DistributionBase, q: DistributionBase, params_p: _Params, params_q: _Params) -> torch.Tensor:
    """Torch's KL of the torch objects equivalent to ``p`` and ``q`` given their parameters."""
    try:
        return torch.distributions.kl_divergence(p._torch_dist(params_p), q._torch_dist(params_q))
    except NotImplementedError as e:
        raise NotDefinedError(
            f"KL divergence between {p._owner()} and {q._owner()} has no closed form; use "
            "KullbackLeibler(..., analytical=False) for a Monte Carlo estimate"
        ) from e


def kl_elementwise(p: DistributionBase, params_p: _Params, q: DistributionBase, params_q: _Params) -> torch.Tensor:
    r"""Elementwise closed-form KL divergence of ``p`` from ``q`` given their parameters.

    For two normals
    :math:`D_{KL} = \log\frac{\sigma_q}{\sigma_p} + \frac{\sigma_p^2 + (\mu_p-\mu_q)^2}{2\sigma_q^2} - \frac12`.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=torch.zeros(2), scale=1., var=["z"])
    >>> q = Normal(loc=torch.ones(2), scale=1., var=["z"])
    >>> kl_elementwise(p, p.get_params(), q, q.get_params())
    tensor([[0.5000, 0.5000]])
    """
    fn = _lookup(p, q)
    if fn is not None:
        return fn(params_p, params_q)
    return _torch_kl(p, q, params_p, params_q)
