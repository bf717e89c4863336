r"""The VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior").

The prior over the latent variable is the encoder's mixture over :math:`K` learned pseudo-inputs
:math:`u_1, \dots, u_K`:

.. math:: p(z) = \frac1K \sum_{k=1}^K q(z|u_k), \qquad
          \log p(z) = \operatorname{logsumexp}_k \log q(z|u_k) - \log K.

The encoder runs once per evaluation on the :math:`K` pseudo-inputs; every value of ``z`` is scored
against all :math:`K` components at once by broadcasting (no loop over data points or components).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._context import EvalContext
from .._latex import convert_latex_name
from ..errors import GraphError, NotDefinedError, ParameterError, ShapeError
from .distributions import Distribution, DistributionBase
from .joint import underlying
from .protocol import SampleSpec, ScoreSpec

__all__ = ["VampPrior"]


class VampPrior(Distribution):
    r"""A mixture prior whose :math:`K` components are the encoder applied to :math:`K` learned pseudo-inputs.

    Args:
        q: the encoder :math:`q(z|x)`, a parametric family with exactly one conditioning variable. Its
            networks are shared (the prior's parameters include them), as in the paper.
        n_components: :math:`K`, when the pseudo-inputs are initialised here.
        input_shape: the shape of one input :math:`x`, when the pseudo-inputs are initialised here.
        pseudo_inputs: initial pseudo-inputs of shape ``(K, *input_shape)`` (for example K training
            images); otherwise they start as :math:`\mathcal{N}(0, \text{init\_std}^2)` noise.
        activation: applied to the pseudo-inputs before the encoder, e.g. ``nn.Hardtanh(0, 1)`` for
            images in :math:`[0, 1]` as in the paper (default: none).
        init_std: the standard deviation of the random initialisation.
        name: the distribution's name.

    Sampling picks a component uniformly for every data point and draws from it; it is
    reparameterised (gradients reach the pseudo-inputs and the encoder) when the encoder's family is.
    The mean and variance are the mixture's; the entropy has no closed form.

    >>> from pixyz_like.distributions import Normal
    >>> class Encoder(Normal):
    ...     def __init__(self):
    ...         super().__init__(var=["z"], cond_var=["x"], name="q")
    ...         self.fc = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return {"loc": self.fc(x), "scale": torch.ones(x.shape[0], 2)}
    >>> prior = VampPrior(Encoder(), n_components=10, input_shape=[4], name="p_prior")
    >>> print(prior.prob_joint_factorized_and_text)
    p_{prior}(z) = \frac{1}{10}\sum_{k=1}^{10} q(z|u_k)
    >>> prior.sample(batch_n=3, sample_shape=[5])["z"].shape
    torch.Size([5, 3, 2])
    >>> prior.get_log_prob({"z": torch.zeros(3, 2)}).shape
    torch.Size([3])
    """

    distribution_name = "VampPrior"

    def __init__(
        self,
        q: Distribution,
        n_components: int | None = None,
        input_shape: Sequence[int] | None = None,
        pseudo_inputs: torch.Tensor | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        init_std: float = 0.01,
        name: str = "p",
    ) -> None:
        owner = f"VampPrior(name={name!r})"
        if not isinstance(q, Distribution) or not isinstance(underlying(q).base, DistributionBase):
            raise TypeError(f"{owner}: the encoder must be a parametric family (Normal, ...), got {type(q).__name__}")
        if len(q.input_var) != 1:
            raise GraphError(f"{owner}: the encoder must have exactly one conditioning variable, got {q.prob_text}")
        super().__init__(var=q.var, name=name, features_shape=q.features_shape)
        if pseudo_inputs is None:
            if n_components is None or input_shape is None:
                raise ParameterError(f"{owner}: give pseudo_inputs, or n_components and input_shape")
            if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
                raise ParameterError(f"{owner}: n_components must be a positive integer, got {n_components!r}")
            pseudo_inputs = torch.randn(n_components, *input_shape) * init_std
        else:
            pseudo_inputs = torch.as_tensor(pseudo_inputs).detach().clone().to(torch.get_default_dtype())
            if pseudo_inputs.ndim < 1 or (n_components is not None and pseudo_inputs.shape[0] != n_components):
                raise ShapeError(
                    f"{owner}: pseudo_inputs must have shape (n_components, *input_shape), got "
                    f"{tuple(pseudo_inputs.shape)}"
                )
        self.q = q
        self.pseudo_inputs = nn.Parameter(pseudo_inputs)
        self.activation = activation

    @property
    def n_components(self) -> int:
        """:math:`K`, the number of pseudo-inputs."""
        return self.pseudo_inputs.shape[0]

    @property
    def has_reparam(self) -> bool:  # type: ignore[override]
        return self.q.has_reparam

    @property
    def prob_factorized_text(self) -> str:
        k = self.n_components
        var = ",".join(convert_latex_name(v) for v in self.var)
        inner = f"{convert_latex_name(self.q.name)}({var}|u_k)"
        return f"\\frac{{1}}{{{k}}}\\sum_{{k=1}}^{{{k}}} {inner}"

    def _check_reparam(self) -> None:
        self.q._check_reparam()

    def _components(self, ctx: EvalContext | None) -> dict[str, torch.Tensor]:
        """The encoder's parameters at the K pseudo-inputs, each of shape ``(K or 1, *features)``."""
        memo = ctx.memo if ctx is not None else None
        hit = memo.get(self, (self.pseudo_inputs,)) if memo is not None else None
        if hit is not None:
            return hit
        u = self.pseudo_inputs if self.activation is None else self.activation(self.pseudo_inputs)
        params = underlying(self.q).params({self.q.input_var[0]: u}, ctx)
        if memo is not None:
            memo.put(self, (self.pseudo_inputs,), params)
        return params

    def _family(self) -> DistributionBase:
        base = underlying(self.q).base
        assert isinstance(base, DistributionBase)  # checked when built
        return base

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        sum_features, feature_dims = spec
        if not sum_features or feature_dims is not None:
            raise NotDefinedError(
                f"{self._owner()}: a mixture's log-density does not factorise over features; use "
                "sum_features=True and the default feature_dims"
            )
        fam, params = self._family(), self._components(ctx)
        z = x_dict[self._var[0]]
        n_trail = max(v.ndim for v in params.values()) - 1  # features (+ event) dims of one component
        if not isinstance(z, torch.Tensor) or z.ndim <= n_trail:
            raise ShapeError(
                f"{self._owner()}: variable {self._var[0]!r} must have shape (*sample_shape, batch, *features), "
                f"got {tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
            )
        trail = torch.broadcast_shapes(*[v.shape[1:] for v in params.values()])
        if tuple(z.shape[z.ndim - n_trail:]) != tuple(trail[len(trail) - n_trail:]):
            raise ShapeError(
                f"{self._owner()}: variable {self._var[0]!r} has shape {tuple(z.shape)}, but its components "
                f"have features {tuple(trail)}: expected (*sample_shape, batch, {', '.join(map(str, trail))})"
            )
        # z: (..., batch, *features) -> (..., batch, 1, *features), against (K, *features): (..., batch, K).
        lp = fam._log_prob_value(params, z.unsqueeze(z.ndim - n_trail))
        n_feat = n_trail - fam.event_ndim
        if n_feat:
            lp = lp.sum(dim=tuple(range(-n_feat, 0)))
        return torch.logsumexp(lp, dim=-1) - math.log(self.n_components)

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        batch_n, sample_shape, reparam, sample_mean = spec
        fam, params = self._family(), self._components(ctx)
        k = self.n_components
        lead = torch.Size(sample_shape) + (batch_n or 1,)
        if sample_mean:
            mean = fam._mean(params)
            mean = mean.mean(0, keepdim=True) if mean.shape[0] == k else mean
            return {self._var[0]: mean.expand(*lead, *mean.shape[1:])}
        index = torch.randint(k, lead, device=self.pseudo_inputs.device)
        picked = {key: v[index] if v.shape[0] == k else v.reshape(v.shape[1:]) for key, v in params.items()}
        trail = torch.broadcast_shapes(*[v.shape[1:] for v in params.values()])
        return {self._var[0]: fam._draw(picked, lead + trail, reparam and fam.has_reparam)}

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        fam, params = self._family(), self._components(None)
        means = fam._mean(params)
        variances = fam._variance(params)
        means, variances = torch.broadcast_tensors(means, variances)
        mean = means.mean(0, keepdim=True)
        return mean, (variances + means**2).mean(0, keepdim=True) - mean**2

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        r""":math:`\frac1K \sum_k \mu(u_k)`, shape ``(1, *features)``."""
        return self._moments()[0]

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        r""":math:`\frac1K \sum_k (\sigma^2(u_k) + \mu(u_k)^2) - \mu^2`, shape ``(1, *features)``."""
        return self._moments()[1]
