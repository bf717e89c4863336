r"""Parametric families: :class:`Normal`, :class:`Bernoulli`, :class:`Categorical`.

Each family writes its log-density, sampler, entropy and moments as plain tensor maths (cheaper than
building a :mod:`torch.distributions` object per call); the tests check every formula against
:mod:`torch.distributions`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ShapeError
from .distributions import DistributionBase
from .kl import register_kl

__all__ = ["Normal", "Bernoulli", "Categorical"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Normal(DistributionBase):
    r"""Gaussian with mean ``loc`` and standard deviation ``scale``, independent over features.

    .. math:: \log \mathcal{N}(x;\mu,\sigma) = -\frac{(x-\mu)^2}{2\sigma^2} - \log\sigma - \tfrac12\log 2\pi

    >>> p = Normal(loc=torch.tensor(0.), scale=torch.tensor(1.), var=["z"], features_shape=[2], name="p_prior")
    >>> print(p.prob_text)
    p_{prior}(z)
    >>> p.get_log_prob({"z": torch.zeros(1, 2)})
    tensor([-1.8379])
    """

    distribution_name = "Normal"
    params_keys = ("loc", "scale")
    has_reparam = True
    distribution_torch_class = torch.distributions.Normal

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        loc: Any = None,
        scale: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, loc=loc, scale=scale)

    def _log_prob_value(self, params, value):
        loc, scale = params["loc"], params["scale"]
        return -((value - loc) ** 2) / (2 * scale**2) - scale.log() - _HALF_LOG_2PI

    def _draw(self, params, shape, reparam):
        loc, scale = params["loc"], params["scale"]
        eps = torch.randn(shape, dtype=loc.dtype, device=loc.device)
        if reparam:
            return loc + scale * eps
        with torch.no_grad():
            return loc + scale * eps

    def _entropy(self, params):
        return 0.5 + _HALF_LOG_2PI + params["scale"].log()

    def _mean(self, params):
        return params["loc"]

    def _variance(self, params):
        return params["scale"] ** 2


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    var_ratio = (p["scale"] / q["scale"]) ** 2
    t1 = ((p["loc"] - q["loc"]) / q["scale"]) ** 2
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())


class Bernoulli(DistributionBase):
    r"""Independent Bernoulli variables with success probability ``probs`` (or ``logits``).

    .. math:: \log p(x) = x \log \pi + (1 - x) \log (1 - \pi)

    The same formula is used for targets in :math:`[0, 1]` that are not binary (grey-level MNIST, as
    in Pixyz's examples): it is then the negative binary cross-entropy, not a normalised density.
    Log-probabilities are clamped at -100, as :func:`torch.nn.functional.binary_cross_entropy` does,
    so a saturated sigmoid gives a large finite loss rather than ``inf``.

    >>> p = Bernoulli(probs=torch.tensor([0.2, 0.9]), var=["x"])
    >>> p.get_log_prob({"x": torch.tensor([[0., 1.]])})
    tensor([-0.3285])
    """

    distribution_name = "Bernoulli"
    params_keys = ("probs", "logits")
    distribution_torch_class = torch.distributions.Bernoulli

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        probs: Any = None,
        logits: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, probs=probs, logits=logits)

    def _required_keys_ok(self, keys: Iterable[str]) -> bool:
        keys = set(keys)
        return keys == {"probs"} or keys == {"logits"}

    def _expected_keys_text(self) -> str:
        return "['probs'] or ['logits']"

    def _log_prob_value(self, params, value):
        if "probs" in params:
            probs = params["probs"]
            if probs.shape != value.shape:
                probs, value = torch.broadcast_tensors(probs, value)
            return -F.binary_cross_entropy(probs, value, reduction="none")
        logits = params["logits"]
        if logits.shape != value.shape:
            logits, value = torch.broadcast_tensors(logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")

    def _probs(self, params):
        return params["probs"] if "probs" in params else torch.sigmoid(params["logits"])

    def _draw(self, params, shape, reparam):
        with torch.no_grad():
            return torch.bernoulli(self._probs(params).expand(shape))

    def _entropy(self, params):
        if "probs" in params:
            p = params["probs"]
            return F.binary_cross_entropy(p, p, reduction="none")
        logits = params["logits"]
        return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits), reduction="none")

    def _mean(self, params):
        return self._probs(params)

    def _variance(self, params):
        p = self._probs(params)
        return p * (1 - p)


def _bernoulli_log_probs(params):
    if "logits" in params:
        return F.logsigmoid(params["logits"]), F.logsigmoid(-params["logits"])
    p = params["probs"]
    return torch.log(p).clamp_min(-100), torch.log1p(-p).clamp_min(-100)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    lp1, lp0 = _bernoulli_log_probs(p)
    lq1, lq0 = _bernoulli_log_probs(q)
    pp = lp1.exp()
    return pp * (lp1 - lq1) + (1 - pp) * (lp0 - lq0)


class Categorical(DistributionBase):
    r"""A categorical variable represented one-hot: the last dimension of ``probs`` enumerates the
    categories, and samples and values are one-hot vectors over it.

    .. math:: \log p(x) = \sum_k x_k \log \pi_k, \qquad x \in \{e_1, \dots, e_K\}

    ``probs`` are normalised over the last dimension. A value that is not one-hot is refused (Pixyz
    silently took its argmax).

    >>> p = Categorical(probs=torch.tensor([0.2, 0.3, 0.5]), var=["y"])
    >>> p.get_log_prob({"y": torch.tensor([[0., 0., 1.]])})
    tensor([-0.6931])
    """

    distribution_name = "Categorical"
    params_keys = ("probs",)
    event_ndim = 1
    distribution_torch_class = torch.distributions.OneHotCategorical

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        probs: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, probs=probs)

    def _register_constant(self, key, value):
        # The category dimension is an event dimension, not a feature dimension.
        tensor = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(value)
        tensor = tensor.to(torch.get_default_dtype()) if not tensor.is_floating_point() else tensor
        if tensor.ndim == 0:
            raise ShapeError(f"{self._owner()}: probs must have a last dimension over the categories")
        if len(self._features_shape) == 0:
            self._features_shape = tensor.shape[:-1]
        self.register_buffer(key, tensor.expand(self._features_shape + tensor.shape[-1:]).unsqueeze(0).clone())
        self._const_keys.append(key)

    @staticmethod
    def _log_probs(params):
        probs = params["probs"]
        probs = probs / probs.sum(-1, keepdim=True)
        return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))

    def _check_value(self, params, value):
        value = super()._check_value(params, value)
        if not bool(((value == 0) | (value == 1)).all() and (value.sum(-1) == 1).all()):
            raise ShapeError(
                f"{self._owner()}: variable {self._var[0]!r} must be one-hot over its last dimension "
                f"(size {value.shape[-1]}); use torch.nn.functional.one_hot for class indices"
            )
        return value

    def _log_prob_value(self, params, value):
        return (value * self._log_probs(params)).sum(-1)

    def _draw(self, params, shape, reparam):
        with torch.no_grad():
            probs = params["probs"]
            k = probs.shape[-1]
            flat = probs.expand(shape).reshape(-1, k)
            idx = torch.multinomial(flat, 1).squeeze(-1)
            return F.one_hot(idx, k).to(probs.dtype).reshape(shape)

    def _entropy(self, params):
        logp = self._log_probs(params)
        return -(logp.exp() * logp).sum(-1)

    def _mean(self, params):
        probs = params["probs"]
        return probs / probs.sum(-1, keepdim=True)

    def _variance(self, params):
        p = self._mean(params)
        return p * (1 - p)


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    lp = Categorical._log_probs(p)
    lq = Categorical._log_probs(q)
    return (lp.exp() * (lp - lq)).sum(-1)
