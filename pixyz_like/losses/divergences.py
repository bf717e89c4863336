r"""The Kullback-Leibler divergence :math:`D_{KL}[p\|q]`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from .._context import EvalContext
from ..distributions.distributions import Distribution, DistributionBase
from ..distributions.joint import underlying
from ..distributions.kl import closed_form_kl
from ..distributions.protocol import SUMMED, broadcast_shapes, reduce_features
from ..errors import NotDefinedError, ShapeError, VariableMismatchError
from .losses import Divergence, Expectation

__all__ = ["KullbackLeibler", "KL", "AnalyticalKullbackLeibler", "Divergence"]


_Params = dict[str, torch.Tensor]


class _ClosedForm(NamedTuple):
    """The two families under any renaming views, and their closed-form KL given their parameters."""

    p: DistributionBase
    q: DistributionBase
    kl: Callable[[_Params, _Params], torch.Tensor]


class KullbackLeibler(Divergence):
    r"""The KL divergence :math:`D_{KL}[p\|q] = \mathbb{E}_{p}[\log p - \log q]`, one value per data point.

    With ``analytical=True`` the closed form of the two families is used (summed over features, or
    over ``dim``); with ``analytical=False`` it is a Monte Carlo estimate from ``sample_shape`` draws of
    ``p``, :math:`\frac1S\sum_s \log p(z_s) - \log q(z_s)`; ``analytical="auto"`` takes the closed
    form when one exists for the two families (see
    :func:`~pixyz_like.distributions.has_closed_form_kl`) and the Monte Carlo estimate otherwise (a
    joint, a flow, a mixture...). The formula prints what is computed: :math:`D_{KL}[\cdot\|\cdot]`
    for the closed form, the expectation for the estimate. The closed form pairs the two
    distributions' variables in order, so their names may differ (as in Pixyz); the Monte Carlo
    estimate needs the same variables. A pair with no closed form is refused when the loss is
    evaluated (``NotDefinedError``), not when it is built.

    >>> from pixyz_like.distributions import Normal
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_prior")
    >>> kl = KullbackLeibler(q, prior)
    >>> print(kl)
    D_{KL} \left[q(z|x)||p_{prior}(z) \right]
    >>> kl.eval({"x": torch.ones(1, 2)})
    tensor([1.])
    >>> p_joint = Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * prior
    >>> q_joint = q * Normal(loc=0., scale=2., var=["x"], features_shape=[2])
    >>> q_joint.name = "q"
    >>> print(KullbackLeibler(q_joint, p_joint, analytical="auto"))  # joints: Monte Carlo
    \mathbb{E}_{q(z,x)} \left[\log q(z,x) - \log p(x,z) \right]
    """

    def __init__(self, p: Distribution, q: Distribution, dim: int | Sequence[int] | None = None,
                 analytical: bool | str = True, sample_shape: Sequence[int] | torch.Size = torch.Size([1])) -> None:
        if analytical not in (True, False, "auto"):
            raise TypeError(f"KullbackLeibler: analytical must be True, False or 'auto', got {analytical!r}")
        super().__init__(p.input_var + q.input_var)
        self.p = p
        self.q = q
        self.dim = dim
        self.sample_shape = torch.Size(sample_shape)
        # Resolved once, here: the families under any renaming views, how to reach their inputs, and
        # whether the pair has a closed form (the classes of p and q cannot change).
        self._under_p, self._under_q = underlying(p), underlying(q)
        fp, fq = self._under_p.base, self._under_q.base
        self._closed: _ClosedForm | None = None
        kl = closed_form_kl(fp, fq)
        if kl is not None and isinstance(fp, DistributionBase) and isinstance(fq, DistributionBase):
            self._closed = _ClosedForm(fp, fq, kl)
        closed = self._closed is not None
        # "auto" resolves once, here: the choice depends only on the two families, never on the data.
        self.analytical = closed if analytical == "auto" else bool(analytical)
        if self.analytical:
            # The closed form compares parameters, so the two variables may have different names
            # (a world model compares q(s_post|...) with p(s_prior|...)); they are paired in order.
            if len(p.var) != len(q.var):
                raise VariableMismatchError(
                    f"KullbackLeibler: {p.prob_text} is over {p.var} but {q.prob_text} is over {q.var}; "
                    "a divergence compares distributions over the same number of variables"
                )
            self._mc: Expectation | None = None
        else:
            if set(p.var) != set(q.var):
                raise VariableMismatchError(
                    f"KullbackLeibler: {p.prob_text} is over {p.var} but {q.prob_text} is over {q.var}; "
                    "a Monte Carlo KL scores samples of the first with the second, so both must be over the "
                    "same variables (rename one with replace_var)"
                )
            self._mc = Expectation(p, p.log_prob() - q.log_prob(), sample_shape=self.sample_shape)

    def _not_defined(self) -> NotDefinedError:
        p, q = self.p, self.q
        return NotDefinedError(
            f"KullbackLeibler({p.prob_text}, {q.prob_text}): no closed form is known for "
            f"{p.distribution_name or type(p).__name__} against {q.distribution_name or type(q).__name__}; "
            "use analytical=False (Monte Carlo) or analytical='auto'"
        )

    def _latex(self) -> str:
        if self._mc is not None:
            return self._mc._latex()
        return f"D_{{KL}} \\left[{self.p.prob_text}||{self.q.prob_text} \\right]"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        if self._mc is not None:
            return self._mc._eval(x_dict, ctx)
        if self._closed is None:  # refused when evaluated: programs build KLs they never evaluate
            raise self._not_defined()
        fp, fq, closed_form = self._closed
        # Each family's parameters come with their broadcast shape, checked and memoised with them.
        params_p, shape_p = self._under_p.params_and_shape(x_dict, ctx)
        params_q, shape_q = self._under_q.params_and_shape(x_dict, ctx)
        self._check_shapes(params_p, shape_p, params_q, shape_q)
        kl = closed_form(params_p, params_q)
        if self.dim is not None:
            dims = (self.dim,) if isinstance(self.dim, int) else tuple(self.dim)
            return kl.sum(dim=dims), {}
        n_p, n_q = fp._n_feat_of(shape_p), fq._n_feat_of(shape_q)
        n_feat = None if n_p is None and n_q is None else max(n for n in (n_p, n_q) if n is not None)
        return reduce_features(kl, n_feat, SUMMED), {}

    def _check_shapes(self, params_p: _Params, shape_p: torch.Size, params_q: _Params, shape_q: torch.Size) -> None:
        """The two distributions' parameters must broadcast (same features, compatible batches); each
        side's own parameters already broadcast to its ``shape``."""
        try:
            broadcast_shapes([shape_p, shape_q])
        except RuntimeError as e:
            shapes_p = [v.shape for v in params_p.values()]
            shapes_q = [v.shape for v in params_q.values()]
            raise ShapeError(
                f"KullbackLeibler({self.p.prob_text}, {self.q.prob_text}): the parameters of "
                f"{self.p.prob_text} have shapes {[tuple(s) for s in shapes_p]} and those of {self.q.prob_text} "
                f"{[tuple(s) for s in shapes_q]}; "
                "they must have the same features and batch sizes that broadcast"
            ) from e


KL = KullbackLeibler


class AnalyticalKullbackLeibler(KullbackLeibler):
    r"""The closed-form KL divergence (Pixyz's class; ``KullbackLeibler(p, q, dim)`` is the same).

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=torch.zeros(2), scale=1., var=["z"])
    >>> q = Normal(loc=torch.ones(2), scale=1., var=["z"])
    >>> AnalyticalKullbackLeibler(p, q).eval()
    tensor([1.])
    """

    def __init__(self, p: Distribution, q: Distribution, dim: int | Sequence[int] | None = None) -> None:
        super().__init__(p, q, dim=dim, analytical=True)
