r"""Parametric families: :class:`Normal`, :class:`Bernoulli`, :class:`Categorical`.

Each family writes its log-density, sampler, entropy and moments as plain tensor maths (cheaper than
building a :mod:`torch.distributions` object per call); the tests check every formula against
:mod:`torch.distributions`, in float64 at extreme parameters too.

Each family also declares the domain of its parameters (``param_support``) and the support of its
variable (``_value_support``), checked while validation is on (see
:mod:`pixyz_like.distributions._validation`, switched by :class:`~pixyz_like.set_validation`).
The log-densities are written so that their value and gradient stay finite wherever the true ones
are: the Normal standardises before squaring (a scale of 1e-30 does not underflow in float32), and
the Bernoulli log-likelihood from ``probs`` has :func:`torch.nn.functional.binary_cross_entropy`'s
gradient, finite where a decoder's sigmoid saturates to exactly 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .._context import EvalContext
from ..errors import NotDefinedError, ParameterError, ShapeError
from . import _validation
from ._validation import (
    FINITE,
    NONNEGATIVE,
    ONE_HOT,
    POSITIVE,
    SIMPLEX,
    UNIT_INTERVAL,
    WEIGHTS,
    Constraint,
    counts,
)
from .distributions import DistributionBase
from .kl import register_kl
from .protocol import SampleSpec

__all__ = ["Normal", "Bernoulli", "Categorical"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG_2 = math.log(2.0)
_Params = dict[str, torch.Tensor]
# -log(2 pi) / 2 as a 0-dim CPU tensor of each floating dtype (read only): the constant of a unit-scale
# Normal's log-density on the CPU, where making it on each call (torch.scalar_tensor with a dtype and a
# device) cost more than the addcmul that uses it. (A ternary op refuses a CPU scalar beside CUDA
# tensors: on another device the constant is made.)
_MINUS_HALF_LOG_2PI = {dtype: torch.tensor(-_HALF_LOG_2PI, dtype=dtype, device="cpu")
                       for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def _plain_number(t: torch.Tensor | float) -> float | None:
    """A scale that is one number as a positive finite Python float, so the maths can take it as a
    number: a Python float (``forward`` returned ``scale=1.0``, see ``Normal._number_params``), or a
    one-number CPU tensor that nothing differentiates (a scalar constant: read in 0.4 us, no device
    synchronisation, not inside :func:`torch.compile`, no graph break); ``None`` otherwise."""
    if type(t) is float:
        return t  # (kept as a float only when positive and finite: distributions._kept_number)
    if t.ndim or t.requires_grad or not t.is_cpu or torch.compiler.is_compiling():  # type: ignore[union-attr]
        return None
    v = t.item()  # type: ignore[union-attr]
    return v if 0.0 < v < math.inf else None  # (an invalid scale, unvalidated: torch's NaN path)


def _without_graph(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached where it carries a graph (a draw has no gradient; cheaper than a no_grad block)."""
    return t.detach() if t.requires_grad else t


def _shifted_draw(loc: torch.Tensor, scale: torch.Tensor | float, eps: torch.Tensor, reparam: bool) -> torch.Tensor:
    """``loc + scale * eps`` in one op, the scale taken as a number when it is one (see _plain_number);
    with its graph when ``reparam``, else detached (a draw without reparameterisation carries no graph:
    cheaper than a no_grad block)."""
    s = scale if type(scale) is float else _plain_number(scale)  # (a kept number)
    if not reparam and (loc.requires_grad or (s is None and scale.requires_grad)):  # type: ignore[union-attr]
        loc, scale = loc.detach(), scale if s is not None else scale.detach()  # type: ignore[union-attr]
    if s is None:
        return torch.addcmul(loc, scale, eps)  # type: ignore[arg-type]
    return loc + eps if s == 1.0 else torch.add(loc, eps, alpha=s)


class Normal(DistributionBase):
    r"""Gaussian with mean ``loc`` and standard deviation ``scale``, independent over features.

    .. math:: \log \mathcal{N}(x;\mu,\sigma) = -\tfrac12 \Big(\frac{x-\mu}{\sigma}\Big)^2 - \log\sigma
              - \tfrac12\log 2\pi

    computed in this standardised form, so tiny or huge scales do not under- or overflow
    (:math:`\sigma = 10^{-30}` at :math:`x = \mu` gives 68.16 in float32, where :math:`\sigma^2` is 0).
    ``scale`` must be positive and finite, ``loc`` and the value finite.

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
    param_support = {"loc": FINITE, "scale": POSITIVE}
    # A scale given as a number stays one for this maths (the usual ``scale=1.0``): no tensor made.
    _number_params = frozenset({"scale"})
    # With a valid scale, a NaN or infinite loc gives a NaN or infinite sample (loc + scale * eps): inside
    # a joint, the sample is checked in its place (tests/distributions/test_validation.py).
    _draw_shows_invalid = frozenset({"loc"})
    # A NaN or infinite loc or value, or a scale <= 0, NaN or infinite, makes the log-density NaN or
    # infinite (tests/distributions/test_validation.py checks each case): scoring checks it alone.
    _score_flags_invalid = True

    def _value_support(self) -> Constraint | None:
        return FINITE

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

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        loc, scale = params["loc"], params["scale"]
        s = _plain_number(scale)
        if s is not None:  # one number (``scale=1.0`` from forward, a scalar constant): 3 to 4 tensor ops
            z = value - loc if s == 1.0 else (value - loc) / s
            const = _MINUS_HALF_LOG_2PI.get(z.dtype) if s == 1.0 and z.is_cpu else None
            if const is None:
                const = torch.scalar_tensor(-(math.log(s) + _HALF_LOG_2PI), dtype=z.dtype, device=z.device)
            return torch.addcmul(const, z, z, value=-0.5)
        z = (value - loc) / scale  # standardised first: a tiny scale does not overflow (z * z) / scale**2
        # -(log(scale) + log(2 pi) / 2 + z^2 / 2): the constant part on scale's (often smaller) shape; the
        # in-place steps touch only fresh results that autograd does not keep (torch.rsub is slower).
        return torch.addcmul(scale.log().add_(_HALF_LOG_2PI), z, z, value=0.5).neg_()

    def _draw(self, params: _Params, shape: torch.Size, reparam: bool) -> torch.Tensor:
        loc = params["loc"]
        if loc.shape == shape:
            return self._draw_own(params, reparam)
        return _shifted_draw(loc, params["scale"], torch.randn(shape, dtype=loc.dtype, device=loc.device), reparam)

    def _draw_own(self, params: _Params, reparam: bool) -> torch.Tensor:
        loc = params["loc"]
        # (randn_like when loc has the sample's shape, as from a network: no dtype/device arguments to
        # parse; a contiguous loc makes it draw what randn(shape) would)
        if loc.is_contiguous():
            eps = torch.randn_like(loc)
        else:
            eps = torch.randn(loc.shape, dtype=loc.dtype, device=loc.device)
        return _shifted_draw(loc, params["scale"], eps, reparam)

    def _entropy(self, params: _Params) -> torch.Tensor:
        return 0.5 + _HALF_LOG_2PI + params["scale"].log()

    def _mean(self, params: _Params) -> torch.Tensor:
        return params["loc"]

    def _variance(self, params: _Params) -> torch.Tensor:
        return params["scale"] ** 2


_MINUS_HALF = torch.tensor(-0.5, device="cpu")  # (read only; a CPU scalar whatever the default device)


@register_kl(Normal, Normal)
def _kl_normal_normal(p: _Params, q: _Params) -> torch.Tensor:
    # 1/sigma_q is taken once on q's (often (1, d) constant, e.g. a prior's) scale and multiplied in:
    # dividing the batch by sigma_q twice cost 2% of the quick-start train step, forward and backward.
    inv_q = q["scale"].reciprocal()
    ratio = p["scale"] * inv_q
    shift = (p["loc"] - q["loc"]) * inv_q
    # (ratio^2 + shift^2 - 1) / 2 - log(ratio) as (-1/2 - log ratio) + ratio^2 / 2 + shift^2 / 2: three
    # fused ops after the log where the written-out form takes six (each op costs 2-3 us on small
    # tensors, one with a Python number 2 us more: the -1/2 is a 0-dim tensor, a binary op's operand,
    # which may be a CPU scalar for any device and takes the other's dtype)
    base = torch.sub(_MINUS_HALF, ratio.log())
    return torch.addcmul(torch.addcmul(base, ratio, ratio, value=0.5), shift, shift, value=0.5)


class Bernoulli(DistributionBase):
    r"""Independent Bernoulli variables with success probability ``probs`` (or ``logits``).

    .. math:: \log p(x) = x \log \pi + (1 - x) \log (1 - \pi)

    The same formula is used for targets in :math:`[0, 1]` that are not binary (grey-level MNIST, as
    in Pixyz's examples): it is then the negative binary cross-entropy, not a normalised density.
    Log-probabilities are clamped at -100, as :func:`torch.nn.functional.binary_cross_entropy` does,
    so a saturated sigmoid gives a large finite loss rather than ``inf``; the gradient is that
    function's too, finite (0 where ``probs`` is exactly the value) where the sigmoid saturates to
    exactly 0 or 1. With ``logits`` the score is computed from them
    (:func:`~torch.nn.functional.binary_cross_entropy_with_logits`), exact at any logit. ``probs``
    must lie in :math:`[0, 1]`, ``logits`` be finite, and the value lie in :math:`[0, 1]`.

    >>> p = Bernoulli(probs=torch.tensor([0.2, 0.9]), var=["x"])
    >>> p.get_log_prob({"x": torch.tensor([[0., 1.]])})
    tensor([-0.3285])
    """

    distribution_name = "Bernoulli"
    params_keys = ("probs", "logits")
    params_key_sets = (("probs",), ("logits",))
    distribution_torch_class = torch.distributions.Bernoulli
    param_support = {"probs": UNIT_INTERVAL, "logits": FINITE}

    def _value_support(self) -> Constraint | None:
        return UNIT_INTERVAL

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        probs: Any = None,
        logits: Any = None,
    ) -> None:
        super().__init__(
            var=var, cond_var=cond_var, name=name, features_shape=features_shape, probs=probs, logits=logits
        )

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        if "probs" in params:
            probs = params["probs"]
            if _scored_by_torch_bce(probs, value):
                return F.binary_cross_entropy(probs, value, reduction="none").neg_()
            if torch.is_grad_enabled() and (probs.requires_grad or value.requires_grad):
                return _BernoulliLogLikelihood.apply(probs, value)
            return _bernoulli_lerp(probs, value)
        logits = params["logits"]
        if logits.shape != value.shape:
            logits, value = torch.broadcast_tensors(logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")

    def _probs(self, params: _Params) -> torch.Tensor:
        return params["probs"] if "probs" in params else torch.sigmoid(params["logits"])

    def _draw(self, params: _Params, shape: torch.Size, reparam: bool) -> torch.Tensor:
        return torch.bernoulli(_without_graph(self._probs(params)).expand(shape))

    def _draw_own(self, params: _Params, reparam: bool) -> torch.Tensor:
        return torch.bernoulli(_without_graph(self._probs(params)))

    def _entropy(self, params: _Params) -> torch.Tensor:
        if "probs" in params:
            p = params["probs"]
            return F.binary_cross_entropy(p, p, reduction="none")
        logits = params["logits"]
        return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits), reduction="none")

    def _mean(self, params: _Params) -> torch.Tensor:
        return self._probs(params)

    def _variance(self, params: _Params) -> torch.Tensor:
        p = self._probs(params)
        return p * (1 - p)


def _bernoulli_log_probs(params: _Params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log p, log(1 - p), p)`` with finite gradients, also at ``p`` exactly 0 or 1."""
    if "logits" in params:
        logits = params["logits"]
        return F.logsigmoid(logits), F.logsigmoid(-logits), torch.sigmoid(logits)
    p = params["probs"]
    tiny = torch.finfo(p.dtype).tiny
    return p.clamp_min(tiny).log(), (1 - p).clamp_min(tiny).log(), p


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p: _Params, q: _Params) -> torch.Tensor:
    lp1, lp0, pp = _bernoulli_log_probs(p)
    lq1, lq0, _ = _bernoulli_log_probs(q)
    return pp * (lp1 - lq1) + (1 - pp) * (lp0 - lq0)


#: Up to this many entries on the CPU, torch's one binary_cross_entropy op (forward and backward) costs
#: less than the lerp below and its Python backward (about half, for a tiny VAE); beyond, the lerp is
#: 1.6x (16 x 784) to 3.4x (128 x 784) cheaper (measured forward + backward, one thread).
_BCE_MAX_CPU = 1024


def _scored_by_torch_bce(probs: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether to score with :func:`~torch.nn.functional.binary_cross_entropy` itself: float32 or float64
    tensors of one shape and dtype whose value takes no gradient (it has none for the target), either
    inside :func:`torch.compile` (the compiler fuses it into the kernel a hand-written step compiles
    to) or small CPU tensors while validation is on (torch's eager op raises its own error on entries
    outside [0, 1], which validation names first; with it off a bad entry gives NaN, as the lerp does)."""
    if not (probs.shape == value.shape and probs.dtype is value.dtype and not value.requires_grad
            and probs.dtype in (torch.float32, torch.float64)):
        return False
    if torch.compiler.is_compiling():
        return True
    return _validation.validation_enabled() and probs.is_cpu and probs.numel() <= _BCE_MAX_CPU


def _bernoulli_lerp(probs: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # x log p + (1 - x) log(1 - p) as a lerp between the two clamped logs: the same values as
    # -binary_cross_entropy (which also computes log(1 - p) and clamps at -100) at half its CPU cost.
    # log(1 - p), not log1p(-p): on the CPU log1p costs three times log, and 1 - p loses only the
    # last bits of p below 1e-8, far under the -100 clamp's effect. Only called without autograd
    # (directly, or inside _BernoulliLogLikelihood.forward), so the temporaries are updated in place.
    log0 = torch.sub(1, probs).log_().clamp_min_(-100)
    return torch.lerp(log0, torch.log(probs).clamp_min_(-100), value)


class _BernoulliLogLikelihood(torch.autograd.Function):
    r""":func:`_bernoulli_lerp` with the gradient of ``-binary_cross_entropy``, finite at ``p`` in {0, 1}.

    Through the clamped logs autograd would multiply a zero by :math:`1/(1-p) = \infty` where a
    sigmoid saturates to exactly 1 (NaN); the gradient here is
    :math:`(x - p) / \max(p(1-p), 10^{-12})`, as in :func:`torch.nn.functional.binary_cross_entropy`.
    """

    @staticmethod
    def forward(ctx: Any, probs: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(probs, value)
        return _bernoulli_lerp(probs, value)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        probs, value = ctx.saved_tensors
        grad_probs = grad_value = None
        if ctx.needs_input_grad[0]:
            eps = max(1e-12, torch.finfo(probs.dtype).tiny)
            grad_probs = (grad * (value - probs) / (probs * (1 - probs)).clamp_min(eps)).sum_to_size(probs.shape)
        if ctx.needs_input_grad[1]:
            log_odds = torch.log(probs).clamp_min(-100) - torch.sub(1, probs).log().clamp_min(-100)
            grad_value = (grad * log_odds).sum_to_size(value.shape)
        return grad_probs, grad_value


class Categorical(DistributionBase):
    r"""A categorical variable represented one-hot: the last dimension of ``probs`` enumerates the
    categories, and samples and values are one-hot vectors over it.

    .. math:: \log p(x) = \sum_k x_k \log \pi_k, \qquad x \in \{e_1, \dots, e_K\}

    ``probs`` are non-negative finite weights, normalised over the last dimension (not all zero). A
    value that is not one-hot is refused (Pixyz silently took its argmax). As in Pixyz,
    ``features_shape`` counts the category dimension: ``(K,)`` for one categorical variable.

    >>> p = Categorical(probs=torch.tensor([0.2, 0.3, 0.5]), var=["y"])
    >>> p.get_log_prob({"y": torch.tensor([[0., 0., 1.]])})
    tensor([-0.6931])
    >>> p.features_shape
    torch.Size([3])
    """

    distribution_name = "Categorical"
    params_keys = ("probs",)
    event_ndim = 1
    distribution_torch_class = torch.distributions.OneHotCategorical
    param_support = {"probs": WEIGHTS}

    def _value_support(self) -> Constraint | None:
        return ONE_HOT

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        probs: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, probs=probs)

    def _shaped_constant(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        # The category dimension is an event dimension, not a feature dimension.
        return _event_constant(self, key, tensor)

    @staticmethod
    def _log_probs(params: _Params) -> torch.Tensor:
        probs = params["probs"]
        probs = probs / probs.sum(-1, keepdim=True)
        return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        return (value * self._log_probs(params)).sum(-1)

    def _draw(self, params: _Params, shape: torch.Size, reparam: bool) -> torch.Tensor:
        probs = params["probs"].detach()  # (a draw has no gradient)
        k = probs.shape[-1]
        flat = probs.expand(shape).reshape(-1, k)
        idx = torch.multinomial(flat, 1).squeeze(-1)
        return F.one_hot(idx, k).to(probs.dtype).reshape(shape)

    def _entropy(self, params: _Params) -> torch.Tensor:
        logp = self._log_probs(params)
        return -(logp.exp() * logp).sum(-1)

    def _mean(self, params: _Params) -> torch.Tensor:
        probs = params["probs"]
        return probs / probs.sum(-1, keepdim=True)

    def _variance(self, params: _Params) -> torch.Tensor:
        p = self._mean(params)
        return p * (1 - p)


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p: _Params, q: _Params) -> torch.Tensor:
    lp = Categorical._log_probs(p)
    lq = Categorical._log_probs(q)
    return (lp.exp() * (lp - lq)).sum(-1)


# ---------------------------------------------------------------------------------------------------
# The remaining families. Each writes its log-density itself; sampling, entropy and moments come from
# torch.distributions where the formula adds nothing.

__all__ += [
    "RelaxedBernoulli",
    "FactorizedBernoulli",
    "RelaxedCategorical",
    "Multinomial",
    "Dirichlet",
    "Beta",
    "Laplace",
    "Gamma",
]


def _event_constant(dist: DistributionBase, key: str, tensor: torch.Tensor) -> torch.Tensor:
    """A constant whose last dimension is a category dimension, shaped ``(1, *features, K)``."""
    if tensor.ndim == 0:
        raise ShapeError(f"{dist._owner()}: {key} needs a last dimension over the categories, got a scalar")
    if len(dist._event_shape) == 0:  # features_shape not given: it is the constant's shape
        dist._features_shape, dist._event_shape = tensor.shape[:-1], tensor.shape[-1:]
    try:
        tensor = tensor.expand(dist._features_shape + dist._event_shape)
    except RuntimeError as e:
        raise ShapeError(
            f"{dist._owner()}: {key} of shape {tuple(tensor.shape)} does not fit features_shape "
            f"{tuple(dist.features_shape)} (whose last dimension is the categories)"
        ) from e
    return tensor.unsqueeze(0)


def _temperature_constant(dist: DistributionBase, tensor: torch.Tensor) -> torch.Tensor:
    """A constant temperature is one positive number, kept 0-dim so that it broadcasts everywhere."""
    if tensor.numel() != 1 or not bool(tensor.reshape(()) > 0):
        raise ParameterError(
            f"{dist._owner()}: a constant temperature must be one positive number, got {tensor.tolist()}; "
            "per-data-point temperatures can come from a conditioning variable or forward()"
        )
    return tensor.reshape(())


def _not_defined(dist: DistributionBase, what: str) -> NotDefinedError:
    return NotDefinedError(
        f"{dist._owner()}: the {what} of a (soft) {dist.distribution_name} has no closed form; construct it "
        "with hard=True to work with the discrete distribution, or estimate it from samples"
    )


def _no_relaxed_mean(dist: DistributionBase) -> NotDefinedError:
    return NotDefinedError(
        f"{dist._owner()}: sample(sample_mean=True) has no closed form for the relaxed distribution (as in "
        "Pixyz); sample_mean() gives the underlying discrete distribution's mean, the probabilities"
    )


class _Relaxed(DistributionBase):
    """What the relaxed (Concrete) families share: reparameterised draws, the straight-through ``hard``
    option, and the underlying discrete distribution's mean and variance (as in Pixyz)."""

    #: straight-through samples: the discrete value forward, the relaxed sample's gradient.
    hard: bool

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        """A relaxed family's draw; ``sample(sample_mean=True)`` is refused, as in Pixyz.

        The relaxed (Concrete) distribution's mean has no closed form, so Pixyz's ``sample(sample_mean=True)``
        raised; its ``sample_mean()`` method gives the underlying probabilities instead (used to read a
        classifier's prediction), and so does this class's.
        """
        if spec.sample_mean and not self.hard:
            raise NotDefinedError(
                f"{self._owner()}: the relaxed distribution's mean has no closed form, so "
                "sample(sample_mean=True) is not defined (as in Pixyz); sample_mean(x_dict) gives the "
                "underlying probabilities"
            )
        return super()._sample(x_dict, ctx=ctx, spec=spec)

    def _sample_mean_value(self, params: _Params) -> torch.Tensor:
        if not self.hard:  # as in Pixyz: the relaxed distribution's own mean has no closed form
            raise _no_relaxed_mean(self)
        return self._mean(params)

    def _variance(self, params: _Params) -> torch.Tensor:
        p = self._mean(params)
        return p * (1 - p)

    def extra_repr(self) -> str:
        return super().extra_repr() + f"\nhard={self.hard}"


class RelaxedBernoulli(_Relaxed):
    r"""The relaxed Bernoulli (binary Concrete) distribution on :math:`(0, 1)`, reparameterisable.

    A sample is :math:`x = \sigma\big((\operatorname{logit}\pi + L) / \lambda\big)` with
    :math:`L = \log U - \log(1 - U)` logistic noise and temperature :math:`\lambda`; its density
    (Maddison et al. 2017, "The Concrete Distribution", eq. for the binary case) is

    .. math:: p(x) = \frac{\lambda\, \alpha\, x^{-\lambda-1} (1-x)^{-\lambda-1}}
              {\big(\alpha x^{-\lambda} + (1-x)^{-\lambda}\big)^2}, \qquad \alpha = \frac{\pi}{1-\pi}.

    It equals :class:`torch.distributions.RelaxedBernoulli`'s, which, like this class, reads a value
    of exactly 0 or 1 as the nearest representable interior point (samples at a low temperature round
    to 0 or 1 in floating point). Pixyz scored it with the Bernoulli formula instead.

    ``hard=True`` is the straight-through estimator: a sample is the 0/1 value :math:`1[x > 1/2]` in the
    forward pass (an exact Bernoulli(:math:`\pi`) draw) with the gradient of the relaxed sample. The
    variable is then binary, and log-density, entropy, mean and variance are the Bernoulli ones. The
    soft distribution has no closed-form entropy; ``sample_mean`` and ``sample_variance`` give the
    underlying Bernoulli's, :math:`\pi` and :math:`\pi(1-\pi)`, as Pixyz does, and as in Pixyz
    ``sample(sample_mean=True)`` raises :class:`~pixyz_like.errors.NotDefinedError`.

    The closed-form KL divergence against a :class:`Bernoulli` (either way round) is the KL of the
    underlying Bernoulli distributions: exact for ``hard=True``, the usual surrogate for the soft
    relaxation (as in Pixyz).

    Args:
        temperature: :math:`\lambda > 0` (Pixyz's default 0.1); a number, a conditioning variable or
            a ``forward()`` output.
        probs: :math:`\pi`; ``logits`` may be given instead.
        hard: straight-through 0/1 samples (see above).

    >>> p = RelaxedBernoulli(temperature=0.5, probs=torch.tensor([0.3]), var=["z"])
    >>> x = p.sample(batch_n=4, reparam=True)["z"]
    >>> bool(((x > 0) & (x < 1)).all())
    True
    >>> p.get_log_prob({"z": torch.tensor([[0.4]])})
    tensor([-0.7544])
    """

    distribution_name = "RelaxedBernoulli"
    params_keys = ("temperature", "probs", "logits")
    params_key_sets = (("temperature", "probs"), ("temperature", "logits"))
    has_reparam = True
    distribution_torch_class = torch.distributions.RelaxedBernoulli
    param_support = {"temperature": POSITIVE, "probs": UNIT_INTERVAL, "logits": FINITE}

    def _value_support(self) -> Constraint | None:
        return UNIT_INTERVAL

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
        temperature: Any = 0.1,
        probs: Any = None,
        logits: Any = None,
        hard: bool = False,
    ) -> None:
        self.hard = bool(hard)
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape,
                         temperature=temperature, probs=probs, logits=logits)

    def _shaped_constant(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        if key == "temperature" and tensor.numel() == 1:
            return _temperature_constant(self, tensor)
        return super()._shaped_constant(key, tensor)

    @staticmethod
    def _logits(params: _Params) -> torch.Tensor:
        if "logits" in params:
            return params["logits"]
        p = params["probs"]
        eps = torch.finfo(p.dtype).eps
        p = p.clamp(eps, 1 - eps)
        return p.log() - (-p).log1p()

    def _torch_dist(self, params: _Params) -> torch.distributions.Distribution:
        if self.hard:
            return torch.distributions.Bernoulli(logits=self._logits(params), validate_args=False)
        return torch.distributions.RelaxedBernoulli(params["temperature"], logits=self._logits(params),
                                                    validate_args=False)

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        logits = self._logits(params)
        if self.hard:
            logits, value = torch.broadcast_tensors(logits, value)
            return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        t = params["temperature"]
        finfo = torch.finfo(value.dtype)
        # Change of variables y = logit(x): logistic density of y, plus log |dy/dx| = -log x - log(1-x).
        y = value.clamp(finfo.tiny, 1 - finfo.eps)
        y = y.log() - (-y).log1p()
        diff = logits - t * y
        return t.log() + diff - 2 * F.softplus(diff) + F.softplus(-y) + F.softplus(y)

    def _draw(self, params: _Params, shape: torch.Size, reparam: bool) -> torch.Tensor:
        with torch.set_grad_enabled(reparam and torch.is_grad_enabled()):
            logits = self._logits(params)
            finfo = torch.finfo(logits.dtype)
            u = torch.rand(shape, dtype=logits.dtype, device=logits.device).clamp(finfo.tiny, 1 - finfo.eps)
            score = (logits + u.log() - (-u).log1p()) / params["temperature"]
            soft = torch.sigmoid(score).clamp(finfo.tiny, 1 - finfo.eps)
            if not self.hard:
                return soft
            hard = (score > 0).to(soft.dtype)
            # Straight-through: the value is the 0/1 sample, the gradient is the relaxed sample's.
            return hard - soft.detach() + soft if reparam else hard

    def _entropy(self, params: _Params) -> torch.Tensor:
        if not self.hard:
            raise _not_defined(self, "entropy")
        logits = self._logits(params)
        return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits), reduction="none")

    def _mean(self, params: _Params) -> torch.Tensor:
        # Of the underlying Bernoulli (the relaxed one has no closed form), as in Pixyz.
        return params["probs"] if "probs" in params else torch.sigmoid(params["logits"])


def _discrete_bernoulli_kl(p: _Params, q: _Params) -> torch.Tensor:
    return _kl_bernoulli_bernoulli(p, q)


register_kl(RelaxedBernoulli, Bernoulli)(_discrete_bernoulli_kl)
register_kl(Bernoulli, RelaxedBernoulli)(_discrete_bernoulli_kl)
register_kl(RelaxedBernoulli, RelaxedBernoulli)(_discrete_bernoulli_kl)


class FactorizedBernoulli(Bernoulli):
    r"""A Bernoulli likelihood that scores only the observed (non-zero) entries of ``x``.

    .. math:: \log p(x) = \sum_{i:\, x_i \neq 0} \big[x_i \log \pi_i + (1 - x_i) \log (1 - \pi_i)\big]

    Entries equal to 0 contribute nothing: they are read as "not observed" (attribute vectors with
    missing attributes, Vedantam et al. 2018, "Generative Models of Visually Grounded Imagination").
    This is Pixyz's semantics; it is not a normalised density. Sampling, entropy, mean and variance
    are the Bernoulli ones.

    >>> p = FactorizedBernoulli(probs=torch.tensor([0.2, 0.9]), var=["x"])
    >>> p.get_log_prob({"x": torch.tensor([[0., 1.]])})  # only log 0.9 counts
    tensor([-0.1054])
    """

    distribution_name = "FactorizedBernoulli"

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        lp = super()._log_prob_value(params, value)
        return torch.where(value == 0, torch.zeros((), dtype=lp.dtype, device=lp.device), lp)


class RelaxedCategorical(_Relaxed):
    r"""The relaxed one-hot categorical (Concrete / Gumbel-softmax) distribution on the simplex.

    A sample is :math:`x = \operatorname{softmax}\big((\log\pi + g) / \lambda\big)` with Gumbel noise
    :math:`g`; over :math:`K` categories its density (Maddison et al. 2017; Jang et al. 2017) is

    .. math:: \log p(x) = \log (K-1)! + (K-1)\log\lambda + \sum_k \big(\log\pi_k - (\lambda+1)\log x_k\big)
              - K \log \sum_k \pi_k x_k^{-\lambda}.

    It equals :class:`torch.distributions.RelaxedOneHotCategorical`'s in the interior of the simplex.
    On its boundary (a component exactly 0, which a low-temperature sample reaches by underflow) torch
    returns NaN; here such a component is read as the smallest positive normal float, so the score
    stays finite. Pixyz used a Bernoulli formula: -1.2730 for probs (.2, .3, .5) at (0, 0, 1).

    ``hard=True`` is the straight-through Gumbel-softmax estimator (Jang et al. 2017): a sample is the
    one-hot :math:`e_{\arg\max_k x_k}` in the forward pass (an exact Categorical(:math:`\pi`) draw)
    with the gradient of the relaxed sample. The variable is then one-hot, and log-density, entropy,
    mean and variance are the categorical ones. The soft distribution has no closed-form entropy;
    ``sample_mean`` and ``sample_variance`` give the underlying categorical's, the probabilities
    :math:`\pi` and :math:`\pi(1-\pi)`, as Pixyz does (its M2 example predicts the class from them),
    and as in Pixyz ``sample(sample_mean=True)`` raises :class:`~pixyz_like.errors.NotDefinedError`.

    The closed-form KL divergence against a :class:`Categorical` (either way round) is the KL of the
    underlying categorical distributions: exact for ``hard=True``, the usual surrogate for the soft
    relaxation.

    Args:
        temperature: :math:`\lambda > 0` (Pixyz's default 0.1): a number, or a conditioning variable or
            ``forward()`` output whose last dimension has size 1 (one temperature per event).
        probs: :math:`\pi` over the last dimension (normalised here).
        hard: straight-through one-hot samples (see above).

    >>> p = RelaxedCategorical(temperature=0.5, probs=torch.tensor([0.2, 0.3, 0.5]), var=["y"])
    >>> p.get_log_prob({"y": torch.tensor([[0.1, 0.2, 0.7]])})
    tensor([0.2764])
    >>> q = RelaxedCategorical(temperature=0.5, probs=torch.tensor([0.2, 0.3, 0.5]), var=["y"], hard=True)
    >>> y = q.sample(batch_n=2, reparam=True)["y"]
    >>> bool(((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all())
    True
    """

    distribution_name = "RelaxedCategorical"
    params_keys = ("temperature", "probs")
    event_ndim = 1
    has_reparam = True
    distribution_torch_class = torch.distributions.RelaxedOneHotCategorical
    param_support = {"temperature": POSITIVE, "probs": WEIGHTS}

    def _value_support(self) -> Constraint | None:
        return ONE_HOT if self.hard else SIMPLEX

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
        temperature: Any = 0.1,
        probs: Any = None,
        hard: bool = False,
    ) -> None:
        self.hard = bool(hard)
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape,
                         temperature=temperature, probs=probs)

    def _shaped_constant(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        if key == "temperature":
            return _temperature_constant(self, tensor)
        return _event_constant(self, key, tensor)

    def _temperature(self, params: _Params) -> torch.Tensor:
        t = params["temperature"]
        if t.ndim and t.shape[-1] != 1:
            raise ShapeError(
                f"{self._owner()}: temperature of shape {tuple(t.shape)} must end in a dimension of size 1 "
                "(one temperature per event), or be a single number"
            )
        return t

    def _torch_dist(self, params: _Params) -> torch.distributions.Distribution:
        if self.hard:
            return torch.distributions.OneHotCategorical(probs=params["probs"], validate_args=False)
        t = self._temperature(params)
        return torch.distributions.RelaxedOneHotCategorical(t.squeeze(-1) if t.ndim else t,
                                                            probs=params["probs"], validate_args=False)

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        logp = Categorical._log_probs(params)
        if self.hard:
            return (value * logp).sum(-1)
        t = self._temperature(params)
        k = logp.shape[-1]
        log_x = value.clamp_min(torch.finfo(value.dtype).tiny).log()
        score = logp - t * log_x
        t_event = t.squeeze(-1) if t.ndim else t
        return (
            math.lgamma(k) + (k - 1) * t_event.log()
            + (score - log_x).sum(-1) - k * torch.logsumexp(score, dim=-1)
        )

    def _draw(self, params: _Params, shape: torch.Size, reparam: bool) -> torch.Tensor:
        with torch.set_grad_enabled(reparam and torch.is_grad_enabled()):
            logp = Categorical._log_probs(params)
            finfo = torch.finfo(logp.dtype)
            u = torch.rand(shape, dtype=logp.dtype, device=logp.device).clamp(finfo.tiny, 1 - finfo.eps)
            score = (logp - (-u.log()).log()) / self._temperature(params)
            soft = torch.softmax(score, dim=-1)
            if not self.hard:
                return soft
            hard = F.one_hot(score.argmax(-1), shape[-1]).to(soft.dtype)
            # Straight-through: the value is the one-hot sample, the gradient is the relaxed sample's.
            return hard - soft.detach() + soft if reparam else hard

    def _entropy(self, params: _Params) -> torch.Tensor:
        if not self.hard:
            raise _not_defined(self, "entropy")
        logp = Categorical._log_probs(params)
        return -(logp.exp() * logp).sum(-1)

    def _mean(self, params: _Params) -> torch.Tensor:
        # Of the underlying categorical (the relaxed one has no closed form), as in Pixyz.
        probs = params["probs"]
        return probs / probs.sum(-1, keepdim=True)


register_kl(RelaxedCategorical, Categorical)(_kl_categorical_categorical)
register_kl(Categorical, RelaxedCategorical)(_kl_categorical_categorical)
register_kl(RelaxedCategorical, RelaxedCategorical)(_kl_categorical_categorical)


class Multinomial(DistributionBase):
    r"""Counts of ``total_count`` independent draws over the categories of the last dimension of ``probs``.

    .. math:: \log p(x) = \log n! - \sum_k \log x_k! + \sum_k x_k \log \pi_k, \qquad \sum_k x_k = n

    Samples sum to ``total_count`` :math:`n` (Pixyz ignored it and drew single one-hot counts); a value
    whose counts are not non-negative integers summing to :math:`n` is refused.

    >>> p = Multinomial(total_count=5, probs=torch.tensor([0.2, 0.3, 0.5]), var=["c"])
    >>> p.sample(batch_n=3)["c"].sum(-1)
    tensor([5., 5., 5.])
    >>> p.get_log_prob({"c": torch.tensor([[1., 1., 3.]])})
    tensor([-1.8971])
    """

    distribution_name = "Multinomial"
    params_keys = ("probs",)
    event_ndim = 1
    distribution_torch_class = torch.distributions.Multinomial
    param_support = {"probs": WEIGHTS}

    def _value_support(self) -> Constraint | None:
        return counts(self.total_count)

    def __init__(
        self,
        total_count: int = 1,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
        probs: Any = None,
    ) -> None:
        if isinstance(total_count, torch.Tensor) and total_count.numel() == 1:
            total_count = total_count.item()
        if isinstance(total_count, bool) or not isinstance(total_count, int) or total_count < 0:
            raise ParameterError(
                f"Multinomial(name={name!r}): total_count must be a non-negative integer, got {total_count!r}"
            )
        self.total_count = total_count
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, probs=probs)

    def _shaped_constant(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        return _event_constant(self, key, tensor)

    def _torch_dist(self, params: _Params) -> torch.distributions.Distribution:
        return torch.distributions.Multinomial(self.total_count, probs=params["probs"], validate_args=False)

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        logp = Categorical._log_probs(params)
        n = float(self.total_count)
        return math.lgamma(n + 1) - torch.lgamma(value + 1).sum(-1) + torch.xlogy(value, logp.exp()).sum(-1)

    def _draw(self, params: _Params, shape: torch.Size, reparam: bool) -> torch.Tensor:
        with torch.no_grad():
            probs = params["probs"]
            return torch.distributions.Multinomial(
                self.total_count, probs=probs.expand(shape), validate_args=False
            ).sample()

    def _mean(self, params: _Params) -> torch.Tensor:
        probs = params["probs"]
        return self.total_count * probs / probs.sum(-1, keepdim=True)

    def _variance(self, params: _Params) -> torch.Tensor:
        probs = params["probs"]
        p = probs / probs.sum(-1, keepdim=True)
        return self.total_count * p * (1 - p)

    def extra_repr(self) -> str:
        return super().extra_repr() + f"\ntotal_count={self.total_count}"


class Dirichlet(DistributionBase):
    r"""Dirichlet distribution on the simplex of the last dimension, reparameterisable.

    .. math:: \log p(x) = \sum_k (\alpha_k - 1)\log x_k + \log\Gamma\Big(\sum_k \alpha_k\Big)
              - \sum_k \log\Gamma(\alpha_k)

    >>> p = Dirichlet(concentration=torch.tensor([1.0, 2.0, 3.0]), var=["w"])
    >>> p.get_log_prob({"w": torch.tensor([[0.2, 0.3, 0.5]])})
    tensor([1.5041])
    """

    distribution_name = "Dirichlet"
    params_keys = ("concentration",)
    event_ndim = 1
    has_reparam = True
    distribution_torch_class = torch.distributions.Dirichlet
    param_support = {"concentration": POSITIVE}

    def _value_support(self) -> Constraint | None:
        return SIMPLEX

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
        concentration: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape,
                         concentration=concentration)

    def _shaped_constant(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        return _event_constant(self, key, tensor)

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        a = params["concentration"]
        return (
            torch.xlogy(a - 1, value).sum(-1) + torch.lgamma(a.sum(-1)) - torch.lgamma(a).sum(-1)
        )


class Beta(DistributionBase):
    r"""Beta distribution on :math:`(0, 1)`, reparameterisable.

    .. math:: \log p(x) = (a-1)\log x + (b-1)\log(1-x) - \log B(a, b)

    with :math:`a` = ``concentration1`` and :math:`b` = ``concentration0``.

    >>> p = Beta(concentration1=2.0, concentration0=3.0, var=["x"])
    >>> p.get_log_prob({"x": torch.tensor([0.25])})
    tensor([0.5232])
    """

    distribution_name = "Beta"
    params_keys = ("concentration1", "concentration0")
    has_reparam = True
    distribution_torch_class = torch.distributions.Beta
    param_support = {"concentration1": POSITIVE, "concentration0": POSITIVE}

    def _value_support(self) -> Constraint | None:
        return UNIT_INTERVAL

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
        concentration1: Any = None,
        concentration0: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape,
                         concentration1=concentration1, concentration0=concentration0)

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        a, b = params["concentration1"], params["concentration0"]
        return (
            torch.xlogy(a - 1, value) + torch.xlogy(b - 1, 1 - value)
            + torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b)
        )


class Laplace(DistributionBase):
    r"""Laplace distribution with location ``loc`` and scale ``scale``, reparameterisable.

    .. math:: \log p(x) = -\frac{|x-\mu|}{b} - \log 2b

    >>> p = Laplace(loc=0.0, scale=2.0, var=["x"])
    >>> p.get_log_prob({"x": torch.tensor([1.0])})
    tensor([-1.8863])
    """

    distribution_name = "Laplace"
    params_keys = ("loc", "scale")
    has_reparam = True
    distribution_torch_class = torch.distributions.Laplace
    param_support = {"loc": FINITE, "scale": POSITIVE}

    def _value_support(self) -> Constraint | None:
        return FINITE

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
        loc: Any = None,
        scale: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape,
                         loc=loc, scale=scale)

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        loc, scale = params["loc"], params["scale"]
        return -(value - loc).abs() / scale - scale.log() - _LOG_2

    def _draw(self, params: _Params, shape: torch.Size, reparam: bool) -> torch.Tensor:
        with torch.set_grad_enabled(reparam and torch.is_grad_enabled()):
            loc, scale = params["loc"], params["scale"]
            # Inverse CDF of u ~ U(-1, 1); the lower end is kept off -1, where log1p(-|u|) is -inf.
            u = torch.empty(shape, dtype=loc.dtype, device=loc.device)
            u = u.uniform_(torch.finfo(loc.dtype).eps - 1, 1)
            return loc - scale * u.sign() * torch.log1p(-u.abs())

    def _entropy(self, params: _Params) -> torch.Tensor:
        return (1 + _LOG_2) + params["scale"].log()

    def _mean(self, params: _Params) -> torch.Tensor:
        return params["loc"]

    def _variance(self, params: _Params) -> torch.Tensor:
        return 2 * params["scale"] ** 2


class Gamma(DistributionBase):
    r"""Gamma distribution with shape ``concentration`` :math:`a` and ``rate`` :math:`b`, reparameterisable.

    .. math:: \log p(x) = a \log b + (a - 1)\log x - b x - \log\Gamma(a)

    >>> p = Gamma(concentration=2.0, rate=3.0, var=["x"])
    >>> p.get_log_prob({"x": torch.tensor([0.5])})
    tensor([0.0041])
    """

    distribution_name = "Gamma"
    params_keys = ("concentration", "rate")
    has_reparam = True
    distribution_torch_class = torch.distributions.Gamma
    param_support = {"concentration": POSITIVE, "rate": POSITIVE}

    def _value_support(self) -> Constraint | None:
        return NONNEGATIVE

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
        concentration: Any = None,
        rate: Any = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape,
                         concentration=concentration, rate=rate)

    def _log_prob_value(self, params: _Params, value: torch.Tensor) -> torch.Tensor:
        a, b = params["concentration"], params["rate"]
        return torch.xlogy(a, b) + torch.xlogy(a - 1, value) - b * value - torch.lgamma(a)
