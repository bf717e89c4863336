r"""Mixtures: :class:`MixtureOfNormal` (a mixture of experts) and :class:`MixtureModel` with its posterior.

A mixture's density is :math:`p(x) = \sum_k w_k\, p_k(x)`, evaluated stably in log space as
:math:`\log p(x) = \operatorname{logsumexp}_k (\log w_k + \log p_k(x))`. A sample picks a component
at random with probabilities :math:`w` for every data point (and every sample), then draws from it;
the components are drawn in one call each and the picks gathered, with no loop over data points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from .._batch import infer_batch_n
from .._context import EvalContext
from .._latex import convert_latex_name, format_number
from .._options import check_options
from ..errors import GraphError, NotDefinedError, ParameterError, ShapeError, VariableMismatchError
from ..utils import tolist
from .distributions import Distribution
from .families import Categorical
from .protocol import SUMMED, SampleSpec, ScoreSpec

__all__ = ["MixtureOfNormal", "MixtureModel", "PosteriorMixtureModel"]


def _components(owner: str, distributions: Any, what: str) -> list[Distribution]:
    """Check that ``distributions`` is a non-empty list of distributions over one and the same variable
    (the components of a mixture, the experts of a mixture or a product of experts)."""
    comps = tolist(distributions)
    if not comps:
        raise GraphError(f"{owner}: needs at least one {what}")
    for i, d in enumerate(comps):
        if not isinstance(d, Distribution):
            raise TypeError(f"{owner}: {what} {i} must be a Distribution, got {type(d).__name__}")
    var = comps[0].var
    if len(var) != 1:
        raise GraphError(f"{owner}: each {what} must be over one variable; {what} 0 {comps[0].prob_text} is over {var}")
    for i, d in enumerate(comps):
        if d.var != var:
            raise VariableMismatchError(
                f"{owner}: every {what} must be over the same variable; {what} {i} {d.prob_text} is over "
                f"{d.var}, expected {var} (the variable of {what} 0 {comps[0].prob_text})"
            )
    return comps


def _members(modules: nn.ModuleList) -> list[Distribution]:
    """The distributions in ``modules``: each was checked by :func:`_components` (ModuleList's stubs only
    know ``Module``)."""
    return cast("list[Distribution]", list(modules))


def _pick(samples: list[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """``samples[index[s, b]][s, b, ...]`` for every position: the chosen component's draw."""
    stacked = torch.stack(torch.broadcast_tensors(*samples))  # (K, *sample_shape, batch, *features)
    idx = index.reshape(1, *index.shape, *([1] * (stacked.ndim - 1 - index.ndim)))
    return stacked.gather(0, idx.expand(1, *stacked.shape[1:])).squeeze(0)


def _no_feature_split(owner: str) -> NotDefinedError:
    return NotDefinedError(
        f"{owner}: a mixture's log-density does not factorise over features; use sum_features=True"
    )


class MixtureOfNormal(Distribution):
    r"""A mixture of experts :math:`p(z|x,y) = w_1\,q(z|x) + w_2\,q(z|y)` (Shi et al. 2019, "Variational
    Mixture-of-Experts Autoencoders for Multi-Modal Deep Generative Models").

    .. math:: \log p(z|x,y) = \operatorname{logsumexp}_k \big(\log w_k + \log q_k(z|\cdot)\big)

    Pixyz multiplied each expert's log-density by its weight instead of adding the log-weight. The
    weights are constants (default uniform) and are normalised to sum to one. A sample picks an expert
    per data point with probabilities :math:`w`; a reparameterised sample is reparameterised within
    the chosen expert, which gives unbiased pathwise gradients for the experts' networks because the
    weights are fixed. Mean and variance are the mixture's; the entropy has no closed form. Every
    expert's inputs must be given.

    Args:
        p: the experts, distributions over the same variable (typically Normal).
        weight_modalities: the weights :math:`w_k`, one per expert.
        name: the distribution's name.
        features_shape: the shape of the variable, for display.

    >>> from pixyz_like.distributions import Normal
    >>> qx = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q")
    >>> qy = Normal(loc="y", scale=1.0, var=["z"], cond_var=["y"], name="q")
    >>> moe = MixtureOfNormal([qx, qy])
    >>> print(moe.prob_joint_factorized_and_text)
    p(z|x,y) = 0.5q(z|x) + 0.5q(z|y)
    >>> x = {"x": torch.zeros(1, 1), "y": torch.zeros(1, 1), "z": torch.zeros(1, 1)}
    >>> moe.get_log_prob(x)  # both experts N(0, 1): log N(0; 0, 1)
    tensor([-0.9189])
    """

    distribution_name = "MixtureOfNormal"
    p: nn.ModuleList
    weights: torch.Tensor

    def __init__(
        self,
        p: Sequence[Distribution] | Distribution = (),
        weight_modalities: Sequence[float] | torch.Tensor | None = None,
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
    ) -> None:
        owner = f"{type(self).__name__}(name={name!r})"
        experts = _components(owner, p, "expert")
        cond_var = list(dict.fromkeys(v for e in experts for v in e.cond_var))
        super().__init__(var=experts[0].var, cond_var=cond_var, name=name, features_shape=features_shape)
        self.p = nn.ModuleList(experts)
        if weight_modalities is None:
            weights = torch.ones(len(experts))
        else:
            weights = torch.as_tensor(weight_modalities, dtype=torch.get_default_dtype()).detach().clone()
        if weights.shape != (len(experts),) or bool((weights < 0).any()) or not bool(weights.sum() > 0):
            raise ParameterError(
                f"{owner}: weight_modalities must hold {len(experts)} non-negative numbers, one per expert, "
                f"not all zero; got {weights.tolist()}"
            )
        self.register_buffer("weights", weights / weights.sum())

    @property
    def has_reparam(self) -> bool:  # type: ignore[override]  # a property for the base's class attribute
        return all(e.has_reparam for e in _members(self.p))

    @property
    def input_var(self) -> list[str]:
        return list(dict.fromkeys(v for e in _members(self.p) for v in e.input_var))

    @property
    def prob_factorized_text(self) -> str:
        pairs = zip(self.weights.tolist(), _members(self.p), strict=True)
        return " + ".join(f"{format_number(w)}{e.prob_text}" for w, e in pairs)

    def _check_reparam(self) -> None:
        for e in _members(self.p):
            e._check_reparam()

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        var = self._var[0]
        batch = infer_batch_n(x_dict, self.input_var) or spec.batch_n
        each = spec._replace(batch_n=batch)
        draws = [e._sample(x_dict, ctx=ctx, spec=each)[var] for e in _members(self.p)]
        if spec.sample_mean:
            w = self.weights.reshape(-1, *([1] * draws[0].ndim))
            return {var: (w * torch.stack(torch.broadcast_tensors(*draws))).sum(0)}
        # One independent pick per sample and data point: the leading sample_shape + (batch,) dims.
        lead = torch.broadcast_shapes(*[d.shape for d in draws])[: len(spec.sample_shape) + 1]
        index = torch.multinomial(self.weights, lead.numel(), replacement=True).reshape(lead)
        return {var: _pick(draws, index)}

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        if not spec.sum_features:
            raise _no_feature_split(self._owner())
        lps = [e._log_prob(x_dict, ctx=ctx, spec=spec) for e in _members(self.p)]
        log_w = self.weights.log().reshape(-1, *([1] * lps[0].ndim))
        return torch.logsumexp(log_w + torch.stack(torch.broadcast_tensors(*lps)), dim=0)

    def _moments(self, x_dict: Mapping[str, Any] | None) -> tuple[torch.Tensor, torch.Tensor]:
        x_dict = self._as_dict(x_dict, "sample_mean")
        self._require(x_dict, self.input_var, "sample_mean")
        means = torch.stack(torch.broadcast_tensors(*[e.sample_mean(x_dict) for e in _members(self.p)]))
        variances = torch.stack(torch.broadcast_tensors(*[e.sample_variance(x_dict) for e in _members(self.p)]))
        w = self.weights.reshape(-1, *([1] * (means.ndim - 1)))
        mean = (w * means).sum(0)
        return mean, (w * (variances + means**2)).sum(0) - mean**2

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        r""":math:`\sum_k w_k \mu_k`."""
        return self._moments(x_dict)[0]

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        r""":math:`\sum_k w_k (\sigma_k^2 + \mu_k^2) - \mu^2`, the law of total variance."""
        return self._moments(x_dict)[1]


class MixtureModel(Distribution):
    r"""A mixture model :math:`p(x) = \sum_i p(x|z=i)\,p(z=i)` with a categorical prior over the component.

    ``prior`` is a :class:`Categorical` over the hidden indicator :math:`z` (one-hot, :math:`K`
    categories) and ``distributions`` are the :math:`K` components, all over the same variable.

    .. math:: \log p(x) = \operatorname{logsumexp}_i \big(\log \pi_i + \log p_i(x)\big)

    ``get_log_prob(..., return_hidden=True)`` returns the joint :math:`\log p(x, z=i)` with the
    components along the first dimension; ``sample(..., return_hidden=True)`` also returns the drawn
    one-hot :math:`z`; :meth:`posterior` is :math:`p(z|x)`. A sample is not reparameterisable (the
    component is a discrete choice). ``sample(sample_mean=True)`` gives the mixture mean
    :math:`\sum_i \pi_i \mu_i`.

    >>> from pixyz_like.distributions import Normal
    >>> comps = [Normal(loc=m, scale=1.0, var=["x"], features_shape=[1], name=f"p_{i}")
    ...          for i, m in enumerate([-2.0, 2.0])]
    >>> prior = Categorical(probs=torch.tensor([0.25, 0.75]), var=["z"], name="prior")
    >>> p = MixtureModel(comps, prior)
    >>> print(p.prob_joint_factorized_and_text)
    p(x) = p_{0}(x|z=0)prior(z=0) + p_{1}(x|z=1)prior(z=1)
    >>> p.posterior().get_params({"x": torch.tensor([[0.0]])})["probs"]  # equidistant: the prior
    tensor([[0.2500, 0.7500]])
    """

    distribution_name = "Mixture Model"
    has_reparam = False
    distributions: nn.ModuleList
    prior: Categorical

    def __init__(self, distributions: Sequence[Distribution], prior: Categorical, name: str = "p") -> None:
        owner = f"MixtureModel(name={name!r})"
        comps = _components(owner, distributions, "component")
        if not isinstance(prior, Categorical):
            raise TypeError(
                f"{owner}: the prior must be a Categorical over the component indicator, got "
                f"{getattr(prior, 'prob_text', '')} ({type(prior).__name__})"
            )
        hidden = prior.var
        # The indicator is summed out, so it may share the observed variable's name (Pixyz's defaults
        # give both "x"); a component conditioned on it would be a cycle, though.
        clash = [v for d in comps for v in d.cond_var if v in hidden]
        if clash:
            raise GraphError(f"{owner}: the components must not be conditioned on the prior's variable {hidden}")
        if len(prior.features_shape) > 1:  # (K,): one categorical variable
            raise ShapeError(
                f"{owner}: the prior must be one categorical variable (probs of shape (K,)), got features_shape "
                f"{tuple(prior.features_shape)}"
            )
        k = prior.get_buffer("probs").shape[-1] if "probs" in prior._const_keys else len(comps)
        if k != len(comps):
            raise ParameterError(
                f"{owner}: the prior {prior.prob_text} has {k} categories, expected "
                f"{len(comps)} (one per component)"
            )
        cond_var = list(dict.fromkeys([v for d in comps for v in d.cond_var] + prior.cond_var))
        super().__init__(var=comps[0].var, cond_var=cond_var, name=name)
        self.distributions = nn.ModuleList(comps)
        self.prior = prior

    @property
    def hidden_var(self) -> list[str]:
        """The component indicator (the prior's variable)."""
        return self.prior.var

    @property
    def input_var(self) -> list[str]:
        inputs = [v for d in _members(self.distributions) for v in d.input_var]
        return list(dict.fromkeys(inputs + self.prior.input_var))

    @property
    def prob_factorized_text(self) -> str:
        x, z = convert_latex_name(self.var[0]), convert_latex_name(self.hidden_var[0])
        prior = convert_latex_name(self.prior.name)
        comps = enumerate(_members(self.distributions))
        return " + ".join(f"{convert_latex_name(d.name)}({x}|{z}={i}){prior}({z}={i})" for i, d in comps)

    def posterior(self, name: str | None = None) -> PosteriorMixtureModel:
        """The posterior over the component, :math:`p(z|x) = p(x, z) / p(x)`."""
        return PosteriorMixtureModel(self, name=name)

    def _log_prior(self, x_dict: Mapping[str, Any], ctx: EvalContext) -> torch.Tensor:
        params = self.prior._get_params(x_dict, ctx)
        k = params["probs"].shape[-1]
        if k != len(self.distributions):
            raise ShapeError(
                f"{self._owner()}: its prior gives {k} categories, expected {len(self.distributions)} "
                "(one per component)"
            )
        return Categorical._log_probs(params)  # (batch or 1, K)

    def _log_joint(self, x_dict: dict[str, Any], ctx: EvalContext, spec: ScoreSpec = SUMMED) -> torch.Tensor:
        """:math:`\\log p(x, z=i)` with the components along the last dimension."""
        lps = [d._log_prob(x_dict, ctx=ctx, spec=spec) for d in _members(self.distributions)]
        return torch.stack(torch.broadcast_tensors(*lps), dim=-1) + self._log_prior(x_dict, ctx)

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        if not spec.sum_features:
            raise _no_feature_split(self._owner())
        return torch.logsumexp(self._log_joint(x_dict, ctx, spec), dim=-1)

    def get_log_prob(
        self,
        x_dict: Mapping[str, Any] | None = None,
        sum_features: bool = True,
        feature_dims: Sequence[int] | None = None,
        return_hidden: bool = False,
        **options: Any,
    ) -> torch.Tensor:
        """:math:`\\log p(x)`, or with ``return_hidden`` the table :math:`\\log p(x, z=i)`, shape ``(K, ...)``."""
        if not return_hidden:
            return super().get_log_prob(x_dict, sum_features, feature_dims, **options)
        check_options(lambda: f"{self._owner()}.get_log_prob()", options, ())
        x_dict = self._as_dict(x_dict, "get_log_prob")
        self._require(x_dict, self.var + self.input_var, "get_log_prob")
        joint = self._log_joint(x_dict, EvalContext(), ScoreSpec.of(True, feature_dims))
        return joint.movedim(-1, 0)

    def _sample_both(
        self, x_dict: dict[str, Any], ctx: EvalContext, spec: SampleSpec
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the component ``z`` then ``x`` from it (never reparameterised); ``(x, z)``."""
        var, hidden = self._var[0], self.hidden_var[0]
        batch = infer_batch_n(x_dict, self.input_var) or spec.batch_n or 1
        each = SampleSpec(batch, spec.sample_shape, False, spec.sample_mean)
        z = self.prior._sample(x_dict, ctx=ctx, spec=each)[hidden]
        if z.shape[-1] != len(self.distributions):
            raise ShapeError(
                f"{self._owner()}: its prior gives {z.shape[-1]} categories, expected {len(self.distributions)}"
            )
        draws = [d._sample(x_dict, ctx=ctx, spec=each)[var] for d in _members(self.distributions)]
        if spec.sample_mean:
            stacked = torch.stack(torch.broadcast_tensors(*draws), dim=-1)  # (..., batch, *features, K)
            probs = z.reshape(*z.shape[:-1], *([1] * (stacked.ndim - z.ndim)), z.shape[-1])
            return (stacked * probs).sum(-1), z
        return _pick(draws, z.argmax(-1)), z

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        return {self._var[0]: self._sample_both(x_dict, ctx, spec)[0]}

    def sample(
        self,
        x_dict: Mapping[str, Any] | torch.Tensor | None = None,
        batch_n: int | None = None,
        sample_shape: Sequence[int] | torch.Size = (),
        return_all: bool = True,
        reparam: bool = False,
        sample_mean: bool = False,
        return_hidden: bool = False,
        **options: Any,
    ) -> dict[str, torch.Tensor]:
        """Draw ``x`` (and, with ``return_hidden``, the one-hot component ``z``); see ``Distribution.sample``."""
        x_dict = self._sample_inputs(x_dict, options, reparam, sample_mean, ("return_hidden",))
        spec = SampleSpec(batch_n, self._sample_shape(sample_shape), False, sample_mean)
        x, z = self._sample_both(x_dict, EvalContext(), spec)
        out = {self._var[0]: x}
        if return_hidden:
            if self.hidden_var[0] == self._var[0]:
                raise GraphError(
                    f"{self._owner()}: return_hidden needs the prior's variable to have its own name; both are "
                    f"{self._var[0]!r} (name the prior's variable, e.g. Categorical(var=['z'], ...))"
                )
            out[self.hidden_var[0]] = z
        return self._sample_result(x_dict, out, return_all)


class PosteriorMixtureModel(Categorical):
    r"""The posterior over a mixture's component, :math:`p(z|x) = p(x, z) / p(x)`, a :class:`Categorical`.

    Its probabilities are the responsibilities
    :math:`\pi_i p_i(x) / \sum_j \pi_j p_j(x) = \operatorname{softmax}_i(\log \pi_i + \log p_i(x))`; it
    samples one-hot components, scores them, and has the categorical entropy, mean and closed-form KL.
    Given ``x`` alone (no value of ``z``), ``get_log_prob`` and ``prob().eval`` return the table
    :math:`\log p(z=i|x)` (or :math:`p(z=i|x)`) for every component, shape ``(K, batch)``, as Pixyz
    did; the EM steps of a Gaussian mixture read the responsibilities this way. Pixyz's version
    could not sample.

    >>> from pixyz_like.distributions import Normal
    >>> comps = [Normal(loc=m, scale=1.0, var=["x"], features_shape=[1]) for m in (-1.0, 1.0)]
    >>> post = MixtureModel(comps, Categorical(probs=torch.tensor([0.5, 0.5]), var=["z"])).posterior()
    >>> print(post.prob_joint_factorized_and_text)
    p(z|x) = \frac{p(z,x)}{p(x)}
    >>> post.sample_mean({"x": torch.tensor([[1.0]])})  # sigmoid(2)
    tensor([[0.1192, 0.8808]])
    """

    distribution_name = "Mixture Model (Posterior)"

    def __init__(self, p: MixtureModel, name: str | None = None) -> None:
        if not isinstance(p, MixtureModel):
            raise TypeError(f"PosteriorMixtureModel: expects a MixtureModel, got {type(p).__name__}")
        super().__init__(var=p.hidden_var, cond_var=p.var + p.cond_var, name=p.name if name is None else name)
        self.p = p

    @property
    def prob_factorized_text(self) -> str:
        name = convert_latex_name(self.name)
        x, z = convert_latex_name(self.p.var[0]), convert_latex_name(self.var[0])
        return f"\\frac{{{name}({z},{x})}}{{{name}({x})}}"  # the hidden variable first, as Pixyz

    @property
    def scoring_var(self) -> list[str]:
        """Only ``x``: scored without ``z`` it gives every component's posterior (see :meth:`_log_prob`)."""
        return self.input_var

    def _get_params(self, x_dict: Mapping[str, Any], ctx: EvalContext | None) -> dict[str, torch.Tensor]:
        # The public get_params/sample_mean/get_entropy pass no context; the components need one.
        ctx = EvalContext() if ctx is None else ctx
        return {"probs": torch.softmax(self.p._log_joint(dict(x_dict), ctx), dim=-1)}

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        if self._var[0] in x_dict and self._var[0] not in self.p.var:
            return super()._log_prob(x_dict, ctx=ctx, spec=spec)
        # Given x alone (as Pixyz): the table log p(z=i|x), components first, shape (K, batch).
        return torch.log_softmax(self.p._log_joint(dict(x_dict), ctx), dim=-1).movedim(-1, 0)
