r"""Products of Gaussian experts: :class:`ProductOfNormal` and :class:`ElementWiseProductOfNormal`.

The product of Gaussian densities is, once normalised, a Gaussian whose precision is the sum of the
experts' precisions and whose mean is their precision-weighted mean (Hinton 2002; Wu & Goodman 2018,
"Multimodal Generative Models for Scalable Weakly-Supervised Learning"). With a standard normal prior
expert and weights :math:`w_0, w_1, \dots`,

.. math:: \tau = w_0 + \sum_k w_k \sigma_k^{-2}, \qquad
          \mu = \tau^{-1} \sum_k w_k \sigma_k^{-2} \mu_k, \qquad \sigma = \tau^{-1/2}.

Both classes are :class:`~pixyz_like.distributions.Normal` distributions with these parameters, so
log-density, entropy, moments, sampling and the closed-form KL are the Normal ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from .._context import EvalContext
from .._latex import convert_latex_name
from ..errors import GraphError, ParameterError, ShapeError, missing_variable_error
from .distributions import Distribution
from .families import Normal
from .joint import underlying
from .mixture import _components

__all__ = ["ProductOfNormal", "ElementWiseProductOfNormal"]


class ProductOfNormal(Normal):
    r"""The product of Gaussian experts :math:`p(z|x,y) \propto p(z)\,q(z|x)\,q(z|y)` with a
    :math:`\mathcal{N}(0, I)` prior expert.

    Its parameters follow the precision-weighted formula of the module docstring. An expert whose
    conditioning variables are all absent from the input dict is left out (a missing modality), so
    with no inputs at all the distribution is the prior :math:`\mathcal{N}(0, I)`; an expert with only
    some of its inputs present is an error.

    Args:
        p: the experts, :class:`~pixyz_like.distributions.Normal` distributions over the same variable.
        weight_modalities: the weights :math:`(w_0, w_1, \dots)`, the prior's first (default all 1).
        name: the distribution's name.
        features_shape: the shape of the variable (taken from the experts when they know it).

    >>> qx = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q")
    >>> qy = Normal(loc="y", scale=1.0, var=["z"], cond_var=["y"], name="q")
    >>> poe = ProductOfNormal([qx, qy])
    >>> print(poe.prob_joint_factorized_and_text)
    p(z|x,y) \propto p(z)q(z|x)q(z|y)
    >>> params = poe.get_params({"x": torch.tensor([[3.0]]), "y": torch.tensor([[0.0]])})
    >>> params["loc"], params["scale"] ** 2  # precision 1 + 1 + 1; mean (3 + 0) / 3
    (tensor([[1.]]), tensor([[0.3333]]))
    >>> poe.get_params({"x": torch.tensor([[3.0]])})["loc"]  # y absent: p(z) q(z|x) only
    tensor([[1.5000]])
    """

    distribution_name = "ProductOfNormal"
    p: nn.ModuleList
    weight_modalities: torch.Tensor

    def __init__(
        self,
        p: Sequence[Distribution] | Distribution = (),
        weight_modalities: Sequence[float] | torch.Tensor | None = None,
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
    ) -> None:
        owner = f"{type(self).__name__}(name={name!r})"
        experts = _components(owner, p, "expert")
        for e in experts:
            if not isinstance(underlying(e).base, Normal):
                raise TypeError(
                    f"{owner}: every expert must be a Normal distribution, got {e.prob_text} "
                    f"({type(underlying(e).base).__name__})"
                )
        var = experts[0].var
        cond_var = list(dict.fromkeys(v for e in experts for v in e.cond_var))
        if not len(features_shape):
            features_shape = next((e.features_shape for e in experts if len(e.features_shape)), ())
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape)
        self.p = nn.ModuleList(experts)
        if weight_modalities is None:
            weights = torch.ones(len(experts) + 1)
        else:
            weights = torch.as_tensor(weight_modalities, dtype=torch.get_default_dtype()).detach().clone()
            if weights.shape != (len(experts) + 1,) or bool((weights < 0).any()):
                raise ParameterError(
                    f"{owner}: weight_modalities must hold {len(experts) + 1} non-negative numbers (the "
                    f"prior's first, then one per expert), got {weights.tolist()}"
                )
        self.register_buffer("weight_modalities", weights)

    def _experts(self) -> list[Distribution]:
        # Each was checked a Distribution when built; ModuleList's stubs only know Module.
        return cast("list[Distribution]", list(self.p))

    @property
    def prob_factorized_text(self) -> str:
        prior = f"{convert_latex_name(self.name)}({','.join(convert_latex_name(v) for v in self.var)})"
        return prior + "".join(e.prob_text for e in self._experts())

    @property
    def prob_joint_factorized_and_text(self) -> str:
        return f"{self.prob_text} \\propto {self.prob_factorized_text}"

    def _require(self, x_dict: Mapping[str, Any], names: Iterable[str], action: str) -> None:
        # The experts' inputs are optional: an absent modality leaves its expert out.
        super()._require(x_dict, [n for n in names if n not in self._cond_var], action)

    def _present_experts(self, x_dict: Mapping[str, Any]) -> list[bool]:
        present = []
        for e in self._experts():
            given = [v in x_dict for v in e.input_var]
            if any(given) and not all(given):
                missing = [v for v, g in zip(e.input_var, given, strict=True) if not g]
                raise missing_variable_error(f"{self._owner()}, expert {e.prob_text}",
                                             "computing its parameters", missing, x_dict.keys())
            present.append(all(given))
        return present

    def _prior_params(self) -> dict[str, torch.Tensor]:
        w = self.weight_modalities
        loc = torch.zeros((1, *self._features_shape) if len(self._features_shape) else (1,),
                          dtype=w.dtype, device=w.device)
        return {"loc": loc, "scale": torch.ones_like(loc) / w[0].sqrt()}

    @staticmethod
    def _combine(prior_precision: torch.Tensor, precisions: list[torch.Tensor],
                 locs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The precision-weighted product of the present experts (at least one) and the prior."""
        total = prior_precision + precisions[0]
        weighted = precisions[0] * locs[0]
        for t, m in zip(precisions[1:], locs[1:], strict=True):
            total = total + t
            weighted = weighted + t * m
        var = 1 / total
        loc, scale = torch.broadcast_tensors(weighted * var, var.sqrt())
        return {"loc": loc, "scale": scale}

    def _get_params(self, x_dict: Mapping[str, Any], ctx: EvalContext | None) -> dict[str, torch.Tensor]:
        w = self.weight_modalities
        precisions, locs = [], []
        for i, (e, present) in enumerate(zip(self._experts(), self._present_experts(x_dict), strict=True)):
            if present:
                params = underlying(e).params(x_dict, ctx)
                precisions.append(w[i + 1] / params["scale"] ** 2)
                locs.append(params["loc"])
        if not precisions:
            return self._prior_params()
        return self._combine(w[0], precisions, locs)


class ElementWiseProductOfNormal(ProductOfNormal):
    r"""A product of experts in which every element of the input vector is its own expert.

    With one expert network :math:`q(z|x)` and an input :math:`x \in \mathbb{R}^D`,

    .. math:: p(z|x) \propto p(z) \prod_{d:\, x_d \neq 0} q(z \mid x_d e_d),

    where :math:`q(z|x_d e_d)` is the network applied to :math:`x` with every other element set to 0
    and :math:`p(z) = \mathcal{N}(0, I)`. An element equal to 0 is read as "not given" and its expert
    is left out (so an all-zero input gives the prior). The ``D`` masked inputs go through the network
    in one call of ``D * batch`` rows. Unlike Pixyz's, its ``sample`` works.

    >>> q = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q")
    >>> poe = ElementWiseProductOfNormal(q)
    >>> poe.get_params({"x": torch.tensor([[2.0, 0.0]])})["loc"]  # expert 1: loc (2, 0); expert 2 absent
    tensor([[1., 0.]])
    >>> poe.sample({"x": torch.ones(4, 2)}, return_all=False)["z"].shape
    torch.Size([4, 2])
    """

    distribution_name = "ElementWiseProductOfNormal"

    def __init__(
        self, p: Distribution, name: str = "p", features_shape: Sequence[int] | torch.Size = ()
    ) -> None:
        if isinstance(p, Distribution) and len(p.input_var) != 1:
            raise GraphError(
                f"ElementWiseProductOfNormal(name={name!r}): the expert network must have exactly one "
                f"conditioning variable (whose elements are the experts), got {p.prob_text}"
            )
        super().__init__(p=p, name=name, features_shape=features_shape)

    @property
    def prob_factorized_text(self) -> str:
        expert = self._experts()[0]
        prior = f"{convert_latex_name(self.name)}({','.join(convert_latex_name(v) for v in self.var)})"
        return f"{prior}\\prod_{{d}} {expert.prob_text}_{{d}}"

    def _get_params(self, x_dict: Mapping[str, Any], ctx: EvalContext | None) -> dict[str, torch.Tensor]:
        expert = self._experts()[0]
        cond = expert.input_var[0]
        if cond not in x_dict:
            return self._prior_params()
        x = x_dict[cond]
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            raise ShapeError(
                f"{self._owner()}: variable {cond!r} must be a (batch, D) tensor whose D elements are the "
                f"experts, got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        batch, n_exp = x.shape
        eye = torch.eye(n_exp, dtype=x.dtype, device=x.device)
        # masked[d, b] is x[b] with every element but the d-th set to 0; all D * batch rows in one call.
        masked = (x.unsqueeze(0) * eye.unsqueeze(1)).reshape(n_exp * batch, n_exp)
        params = underlying(expert).params({**x_dict, cond: masked}, None)

        def per_expert(t: torch.Tensor) -> torch.Tensor:
            if t.shape[0] == n_exp * batch:
                return t.reshape(n_exp, batch, *t.shape[1:])
            return t.unsqueeze(0)  # a constant parameter (batch dim 1) is shared by all experts

        loc, scale = per_expert(params["loc"]), per_expert(params["scale"])
        n_trail = max(loc.ndim, scale.ndim) - 2
        present = (x != 0).T.to(loc.dtype).reshape(n_exp, batch, *([1] * n_trail))
        precision = present / scale**2
        total = self.weight_modalities[0] + precision.sum(0)
        var = 1 / total
        loc, scale = torch.broadcast_tensors((precision * loc).sum(0) * var, var.sqrt())
        return {"loc": loc, "scale": scale}
