r"""Distributions defined by a flow: :class:`TransformedDistribution` and :class:`InverseTransformedDistribution`.

For a bijection :math:`f` and a base ("prior") density :math:`p_0`, the change of variables gives

.. math:: x = f(z),\ z \sim p_0 \quad\Longrightarrow\quad \log p(x) = \log p_0(z)
    - \log\left|\det\frac{\partial f(z)}{\partial z}\right| = \log p_0\big(f^{-1}(x)\big)
    + \log\left|\det\frac{\partial f^{-1}(x)}{\partial x}\right|.

* :class:`TransformedDistribution` pushes prior samples **forward** through the flow: sampling (with
  the sample's log-density) costs one forward pass; scoring an arbitrary value needs ``flow.inverse``.
  Use it with flows cheap in the forward direction (:class:`~pixyz_like.flows.IAF`,
  :class:`~pixyz_like.flows.SylvesterFlow`, :class:`~pixyz_like.flows.PlanarFlow`), e.g. as VAE posteriors.
* :class:`InverseTransformedDistribution` maps data **forward** into the prior's space: scoring costs one
  forward pass, sampling needs ``flow.inverse``. Use it for density estimation
  (:class:`~pixyz_like.flows.MAF`, RealNVP, Glow).

Nothing is remembered between calls: ``get_log_prob`` inverts the value it is given (Pixyz looked up
the inverse of the last sample). The distributions run their flow through its stateless
:meth:`~pixyz_like.flows.Flow.transform` / :meth:`~pixyz_like.flows.Flow.inverse_transform`; their
Pixyz-convention methods (``forward``, ``inverse``, ``inference``, the ``logdet_jacobian`` property)
behave as Pixyz's, for programs. Within one evaluation of a loss, a value this distribution has just
sampled is scored from the log-density computed while sampling (kept in the evaluation's context), so
``E_q[... - log q(z|x)]`` never inverts the flow. A sample and its log-density also come together
from ``sample(..., return_log_prob=True)``.

**Shapes.** Values are ``(*sample_shape, batch, *features)``; the flow sees the sample dimensions
folded into the batch. ``features_shape`` tells how many trailing dimensions are features; it is
inferred for vector flows and may be given explicitly (needed to score values that carry sample
dimensions with image flows). Without it, a value is read as ``(batch, *features)``.

**Conditioning.** The flow's condition ``y`` is the value of the conditioning variables named by
``flow_cond_var`` (:class:`TransformedDistribution`) or ``cond_var``
(:class:`InverseTransformedDistribution`); several are concatenated along the last dimension. The
prior may have conditioning variables of its own; the distribution's ``cond_var`` is the union.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import torch

from .._context import EvalContext
from .._latex import convert_latex_name
from .._options import check_options
from ..errors import GraphError, NotDefinedError, ShapeError
from ..flows.flows import Flow, FlowOutput, _pixyz_inverse
from ..utils import tolist
from .distributions import Distribution
from .protocol import SUMMED, SampleSpec, ScoreSpec

__all__ = ["TransformedDistribution", "InverseTransformedDistribution"]

#: What a flow distribution records about a sample it drew, in the evaluation's context: the sample,
#: its log-density, its number of feature dims, the conditioning values, and the flow's log-det.
_Drawn = tuple[torch.Tensor, torch.Tensor, int, dict[str, Any], "torch.Tensor | None"]


class _FlowDistribution(Distribution):
    """Shared machinery: shape folding, the flow's condition, and the per-evaluation log-density memo."""

    def __init__(
        self,
        prior: Distribution,
        flow: Flow,
        var: Sequence[str] | str,
        flow_cond_var: Sequence[str],
        extra_cond_var: Sequence[str],
        name: str,
        features_shape: Sequence[int] | None,
    ) -> None:
        owner = f"{type(self).__name__}(name={name!r})"
        if not isinstance(prior, Distribution):
            raise TypeError(f"{owner}: prior must be a Distribution, got {type(prior).__name__}")
        if not isinstance(flow, Flow):
            raise TypeError(f"{owner}: flow must be a pixyz_like.flows.Flow, got {type(flow).__name__}")
        if len(prior.var) != 1:
            raise GraphError(f"{owner}: the prior must be over one variable, got {prior.var}")
        var = tolist(var)
        if len(var) != 1:
            raise GraphError(f"{owner}: var must name one variable, got {var}")
        if var[0] == prior.var[0]:
            raise GraphError(
                f"{owner}: var {var[0]!r} is also the prior's variable; name the transformed variable differently"
            )
        flow_cond_var = tolist(flow_cond_var)
        cond = list(dict.fromkeys(list(extra_cond_var) + list(prior.cond_var)))
        if prior.var[0] in cond:
            raise GraphError(f"{owner}: the prior's variable {prior.var[0]!r} cannot be a conditioning variable")
        explicit = features_shape is not None
        shape = self._infer_features(prior, flow) if features_shape is None else features_shape
        super().__init__(var=var, cond_var=cond, name=name, features_shape=shape)
        self.prior = prior
        self.flow = flow
        self._flow_cond_var = flow_cond_var
        self._explicit_features = explicit

    @staticmethod
    def _infer_features(prior: Distribution, flow: Flow) -> torch.Size:
        d = flow.in_features
        if not isinstance(d, int) or not flow.bijective:
            return torch.Size()
        if flow.vector_only:
            return torch.Size([d])
        if tuple(prior.features_shape) == (d,):
            return torch.Size([d])
        return torch.Size()

    # ------------------------------------------------------------------ properties
    @property
    def has_reparam(self) -> bool:  # type: ignore[override]  # a property for the base's class attribute
        """Reparameterised when the prior is (the flow is differentiable)."""
        return self.prior.has_reparam

    def _check_reparam(self) -> None:
        self.prior._check_reparam()

    @property
    def flow_cond_var(self) -> list[str]:
        """The conditioning variables passed to the flow as ``y``."""
        return list(self._flow_cond_var)

    @property
    def logdet_jacobian(self) -> Any:
        """The flow's :attr:`~pixyz_like.flows.Flow.logdet_jacobian` (Pixyz's property): the log-det of the
        last :meth:`forward`, ``inference(..., compute_jacobian=True)`` or ``sample()`` (``TransformedDistribution``)
        your code called. Nothing in pixyz_like reads it."""
        return self.flow.logdet_jacobian

    def _network_text(self) -> str:
        return f"prior: {self.prior.prob_text}\n{self.prior._network_text()}\nflow:\n{self.flow!r}"

    #: How ``var`` is written from the prior's variable: ``f_{flow}`` or ``f^{-1}_{flow}``.
    _flow_text: str
    #: The way the flow runs to score a value of ``var`` (into the prior's space).
    _score_direction: str

    @property
    def prob_factorized_text(self) -> str:
        args = ",".join(convert_latex_name(v) for v in list(self.prior.var) + self._flow_cond_var)
        return f"{convert_latex_name(self._name)}({convert_latex_name(self._var[0])}={self._flow_text}({args}))"

    # ------------------------------------------------------------------ Pixyz's calling convention
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> torch.Tensor:
        """The flow's forward map, Pixyz's convention: the tensor ``f(x, y)``, its log-det kept in
        :attr:`logdet_jacobian` (prior to data for :class:`TransformedDistribution`, data to prior for
        :class:`InverseTransformedDistribution`)."""
        return self.flow.forward(x, y, compute_jacobian)

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The flow's inverse map, Pixyz's convention: the tensor ``f^{-1}(z, y)``."""
        return self.flow.inverse(z, y)

    # ------------------------------------------------------------------ shapes
    def _n_feat(self, value: Any) -> int:
        var = self._var[0]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{self._owner()}: variable {var!r} must be a tensor, got {type(value).__name__}")
        fs = tuple(self._features_shape)
        if fs and value.ndim > len(fs) and tuple(value.shape[-len(fs) :]) == fs:
            return len(fs)
        if self._explicit_features:
            raise ShapeError(
                f"{self._owner()}: variable {var!r} has shape {tuple(value.shape)}; expected "
                f"(*sample_shape, batch, {', '.join(map(str, fs))})"
            )
        if value.ndim < 2:
            raise ShapeError(
                f"{self._owner()}: variable {var!r} has shape {tuple(value.shape)}; expected (batch, *features)"
            )
        return value.ndim - 1

    def _flow_y(self, x_dict: Mapping[str, Any], lead: torch.Size) -> torch.Tensor | None:
        """The flow's condition, with sample dimensions (``lead[:-1]``) folded into the batch."""
        if not self._flow_cond_var:
            return None
        ys = []
        for name in self._flow_cond_var:
            y = x_dict[name]
            if not isinstance(y, torch.Tensor) or y.ndim == 0:
                raise ShapeError(f"{self._owner()}: conditioning variable {name!r} must be a (batch, ...) tensor")
            if len(lead) > 1 and y.ndim >= 1:
                extra = len(lead) - 1
                if y.shape[: len(lead)] == lead and y.ndim > len(lead):  # already carries the sample dims
                    y = y.reshape(-1, *y.shape[len(lead) :])
                else:
                    try:
                        y = y.expand(*lead[:extra], *y.shape).reshape(-1, *y.shape[1:])
                    except RuntimeError as e:
                        raise ShapeError(
                            f"{self._owner()}: conditioning variable {name!r} of shape {tuple(y.shape)} does not "
                            f"match the batch of the value (leading shape {tuple(lead)})"
                        ) from e
            ys.append(y)
        return ys[0] if len(ys) == 1 else torch.cat(ys, dim=-1)

    def _run_flow(
        self, direction: str, value: torch.Tensor, x_dict: Mapping[str, Any], n_lead: int,
        compute_jacobian: bool = True,
    ) -> FlowOutput:
        """The flow run ``direction`` on ``value``, its first ``n_lead`` dims (sample dims and batch) folded
        into the flow's batch and its condition ``y`` read from ``x_dict``: the output unfolded and the
        log-det shaped ``value.shape[:n_lead]`` (``None`` when the flow gives none)."""
        lead = value.shape[:n_lead]
        flat = value.reshape(-1, *value.shape[n_lead:])
        y = self._flow_y(x_dict, lead)
        fn = self.flow.transform if direction == "forward" else self.flow.inverse_transform
        try:
            out, logdet = fn(flat, y, compute_jacobian)
        except Exception as e:
            yshape = None if y is None else tuple(y.shape)
            e.add_note(f"raised in {self._owner()}: its flow's {direction} on an input of shape "
                       f"{tuple(flat.shape)} (condition y: {yshape})")
            raise
        return out.reshape(*lead, *out.shape[1:]), (None if logdet is None else logdet.reshape(lead))

    def _logdet(self, direction: str, logdet: torch.Tensor | None) -> torch.Tensor:
        """The log-det a flow returned when asked for one (``compute_jacobian=True``)."""
        if logdet is None:
            raise NotDefinedError(
                f"{self._owner()}: its flow's {direction} returned no log-determinant (None) although "
                "compute_jacobian=True; a Flow's transform/inverse_transform must return (output, logdet)"
            )
        return logdet

    def _prior_log_prob(
        self, x_dict: Mapping[str, Any], ctx: EvalContext, z: torch.Tensor, n_lead: int
    ) -> torch.Tensor:
        """log p_0(z) summed over exactly the feature dims of ``z`` (its first ``n_lead`` dims are kept)."""
        work = dict(x_dict)
        work[self.prior.var[0]] = z
        return self.prior._log_prob(work, ctx=ctx, spec=ScoreSpec(True, tuple(range(n_lead, z.ndim))))

    @staticmethod
    def _check_sum(owner: str, spec: ScoreSpec) -> None:
        if not spec.sum_features or spec.feature_dims is not None:
            raise NotDefinedError(
                f"{owner}: the log-density of a flow is only defined summed over all features "
                "(sum_features=True, feature_dims=None)"
            )

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        """The change of variables: the flow maps the value into the prior's space (``_score_direction``),
        unless this very value was just sampled (its log-density is then recalled)."""
        self._check_sum(self._owner(), spec)
        value = x_dict[self._var[0]]
        n_feat = self._n_feat(value)
        hit = self._recall(ctx, value, x_dict)
        if hit is not None:
            return hit
        n_lead = value.ndim - n_feat
        direction = self._score_direction
        try:
            z, ld = self._run_flow(direction, value, x_dict, n_lead)
        except NotDefinedError as e:
            if direction != "inverse":
                raise
            raise NotDefinedError(
                f"{self._owner()}: scoring a value needs the flow's inverse, which is not available ({e}); "
                "use sample(..., return_log_prob=True) to get the log-density of a sample"
            ) from e
        return self._prior_log_prob(x_dict, ctx, z, n_lead) + self._logdet(direction, ld)

    # ------------------------------------------------------------------ per-evaluation memo
    def _remember(
        self,
        ctx: EvalContext | None,
        value: torch.Tensor,
        lp: torch.Tensor,
        n_feat: int,
        x_dict: Mapping[str, Any],
        logdet: torch.Tensor | None = None,
    ) -> None:
        if ctx is None:
            return
        ctx.drawn(self).append((value, lp, n_feat, {v: x_dict[v] for v in self._cond_var}, logdet))

    def _lookup(self, ctx: EvalContext | None, value: torch.Tensor, x_dict: Mapping[str, Any]) -> _Drawn | None:
        """The memo entry recorded when this very sample was drawn (same data, same conditions), if any."""
        if ctx is None:
            return None
        entry: _Drawn
        for entry in ctx.drawn(self):
            stored, _, n_feat, conds, _ = entry
            if not (
                value.numel() == stored.numel()
                and value.is_contiguous()
                and stored.is_contiguous()
                and value.untyped_storage().data_ptr() == stored.untyped_storage().data_ptr()
                and value.storage_offset() == stored.storage_offset()
                and value.ndim >= n_feat
                and value.shape[value.ndim - n_feat :] == stored.shape[stored.ndim - n_feat :]
            ):
                continue
            if all(
                self._same_condition(x_dict.get(k), c, stored.shape[: stored.ndim - n_feat]) for k, c in conds.items()
            ):
                return entry
        return None

    def _recall(self, ctx: EvalContext | None, value: torch.Tensor, x_dict: Mapping[str, Any]) -> torch.Tensor | None:
        """The log-density recorded when this very sample was drawn, if any."""
        entry = self._lookup(ctx, value, x_dict)
        if entry is None:
            return None
        n_feat = entry[2]
        return entry[1].reshape(value.shape[: value.ndim - n_feat])

    @staticmethod
    def _same_condition(query: Any, stored: Any, lead: torch.Size) -> bool:
        if query is stored:
            return True
        if not isinstance(query, torch.Tensor) or not isinstance(stored, torch.Tensor) or stored.ndim == 0:
            return False
        try:
            expanded = stored.expand(*lead[:-1], *stored.shape) if len(lead) > 1 else stored
            flat = expanded.reshape(-1, *stored.shape[1:])
            return query.numel() == flat.numel() and torch.equal(query.reshape(flat.shape), flat)
        except RuntimeError:
            return False

    # ------------------------------------------------------------------ public sampling
    #: Pixyz's own options of this class's ``sample``, besides the common ones.
    _extra_sample_options: tuple[str, ...] = ()

    @overload
    def sample(
        self,
        x_dict: Mapping[str, Any] | torch.Tensor | None = None,
        batch_n: int | None = None,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        return_all: bool = True,
        reparam: bool = False,
        sample_mean: bool = False,
        return_log_prob: Literal[False] = False,
        **options: Any,
    ) -> dict[str, torch.Tensor]: ...

    @overload
    def sample(
        self,
        x_dict: Mapping[str, Any] | torch.Tensor | None = None,
        batch_n: int | None = None,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        return_all: bool = True,
        reparam: bool = False,
        sample_mean: bool = False,
        *,
        return_log_prob: Literal[True],
        **options: Any,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]: ...

    @overload
    def sample(
        self,
        x_dict: Mapping[str, Any] | torch.Tensor | None = None,
        batch_n: int | None = None,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        return_all: bool = True,
        reparam: bool = False,
        sample_mean: bool = False,
        return_log_prob: bool = False,
        **options: Any,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], torch.Tensor]: ...

    def sample(
        self,
        x_dict: Mapping[str, Any] | torch.Tensor | None = None,
        batch_n: int | None = None,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        return_all: bool = True,
        reparam: bool = False,
        sample_mean: bool = False,
        return_log_prob: bool = False,
        **options: Any,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Draw ``var`` (and the prior's variable, as Pixyz does) given the conditioning variables.

        As :meth:`Distribution.sample`; with ``return_log_prob=True`` it returns ``(samples,
        log_prob)``, the log-density of the drawn ``var`` (shape ``(*sample_shape, batch)``) computed
        along the way, without a second pass or an inversion when the flow's cheap direction is used
        for sampling.
        """
        x_dict = self._sample_inputs(x_dict, options, reparam, sample_mean, self._extra_sample_options)
        ctx = EvalContext()
        spec = SampleSpec(batch_n, self._sample_shape(sample_shape), reparam, sample_mean)
        out = self._sample(x_dict, ctx=ctx, spec=spec)
        value = out[self._var[0]]
        entry = self._lookup(ctx, value, x_dict)
        out = self._sample_result(x_dict, self._pixyz_sample_options(out, entry, value, options), return_all)
        if not return_log_prob:
            return out
        if entry is not None:
            lp = entry[1].reshape(value.shape[: value.ndim - entry[2]])
        else:  # the flow could not give it along the way (a Pixyz-style inverse): score the sample
            lp = self._log_prob({**x_dict, **out, self._var[0]: value}, ctx=ctx, spec=SUMMED)
        return out, lp

    def _pixyz_sample_options(
        self, out: dict[str, torch.Tensor], entry: _Drawn | None, value: torch.Tensor, options: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        return out


class TransformedDistribution(_FlowDistribution):
    r"""The distribution of :math:`x = f(z)`, :math:`z \sim p_0(z)`: samples go prior :math:`\to` flow.

    .. math:: \log p(x) = \log p_0(z) - \log\left|\det \frac{\partial f}{\partial z}\right|, \qquad z = f^{-1}(x).

    A sample and its log-density cost one forward pass (``sample(..., return_log_prob=True)``); scoring
    any other value calls ``flow.inverse``. ``flow_cond_var`` names conditioning variables fed to
    the flow as ``y`` — an amortised posterior :math:`q(z_K|x)` is ``TransformedDistribution(q0,
    SylvesterFlow(d, cond_features=...), var=["z"], flow_cond_var=["x"])`` with ``q0 = q_0(z_0|x)``.

    Args:
        prior: the base distribution :math:`p_0` over one variable (it may be conditional).
        flow: a :class:`~pixyz_like.flows.Flow` (e.g. a :class:`~pixyz_like.flows.FlowList`).
        var: the name of the transformed variable.
        name: the distribution's name.
        flow_cond_var: conditioning variables passed to the flow.
        features_shape: the shape of one value of ``var`` (inferred for vector flows).

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.flows import IAF
    >>> prior = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z0"], name="p_0")
    >>> p = TransformedDistribution(prior, IAF(2, hidden_features=(8,)), var=["z"])
    >>> print(p.prob_joint_factorized_and_text)
    p(z) = p(z=f_{flow}(z_{0}))
    >>> out, lp = p.sample(batch_n=3, return_log_prob=True)
    >>> out["z"].shape, torch.allclose(lp, p.get_log_prob({"z": out["z"]}), atol=1e-5)
    (torch.Size([3, 2]), True)
    """

    distribution_name = "TransformedDistribution"
    _flow_text = "f_{flow}"
    _score_direction = "inverse"

    def __init__(
        self,
        prior: Distribution,
        flow: Flow,
        var: Sequence[str] | str,
        name: str = "p",
        flow_cond_var: Sequence[str] | str = (),
        features_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__(prior, flow, var, flow_cond_var, tolist(flow_cond_var), name, features_shape)

    @property
    def flow_input_var(self) -> list[str]:
        """The flow's input variable: the prior's variable."""
        return list(self.prior.var)

    #: ``compute_jacobian`` (Pixyz's, default ``True``): after ``sample()`` :attr:`logdet_jacobian` holds the
    #: sample's :math:`\log|\det \partial f/\partial z_0|`, shape ``(*sample_shape, batch)``.
    _extra_sample_options = ("compute_jacobian",)

    def get_log_prob(
        self,
        x_dict: Mapping[str, Any] | None = None,
        sum_features: bool = True,
        feature_dims: Sequence[int] | None = None,
        **options: Any,
    ) -> torch.Tensor:
        r"""Log-density of ``var``: :math:`\log p_0(f^{-1}(x)) + \log|\det \partial f^{-1}/\partial x|`.

        Pixyz's ``compute_jacobian`` option is accepted and changes nothing: the log-determinant is
        always computed for the value given (Pixyz's ``compute_jacobian=False`` reused the one stored by
        the last sample, right only when the value was that sample).
        """
        check_options(lambda: f"{self._owner()}.get_log_prob()", options, ("compute_jacobian",))
        return super().get_log_prob(x_dict, sum_features, feature_dims)

    def _pixyz_sample_options(
        self, out: dict[str, torch.Tensor], entry: _Drawn | None, value: torch.Tensor, options: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        if options.get("compute_jacobian", True) and entry is not None and entry[4] is not None:
            self.flow._logdet_jacobian = entry[4].reshape(value.shape[: value.ndim - entry[2]])
        return out

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        pv = self.prior.var[0]
        z0 = self.prior._sample(x_dict, ctx=ctx, spec=spec)[pv]
        n_lead = len(spec.sample_shape) + 1
        x, ld = self._run_flow("forward", z0, x_dict, n_lead)
        logdet = self._logdet("forward", ld)
        lp = self._prior_log_prob(x_dict, ctx, z0, n_lead) - logdet
        self._remember(ctx, x, lp, x.ndim - n_lead, x_dict, logdet)
        return {self._var[0]: x, pv: z0}


class InverseTransformedDistribution(_FlowDistribution):
    r"""The distribution of :math:`x` with :math:`z = f(x, y) \sim p_0(z)`: data :math:`\to` flow :math:`\to` prior.

    .. math:: \log p(x|y) = \log p_0\big(f(x, y)\big) + \log\left|\det \frac{\partial f(x, y)}{\partial x}\right|

    Scoring costs one forward pass of the flow (density estimation, maximum likelihood); sampling
    draws :math:`z \sim p_0` and returns :math:`x = f^{-1}(z, y)` (with the prior's :math:`z`).
    ``cond_var`` are the flow's conditioning variables (a conditional flow such as
    ``MAF(d, cond_features=...)`` or coupling networks taking ``(x, y)``).

    Args:
        prior: the base distribution :math:`p_0` over one variable.
        flow: a :class:`~pixyz_like.flows.Flow`.
        var: the name of the data variable.
        cond_var: conditioning variables passed to the flow as ``y``.
        name: the distribution's name.
        features_shape: the shape of one value of ``var`` (inferred for vector flows).

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.flows import MAF
    >>> prior = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z"], name="p_0")
    >>> p = InverseTransformedDistribution(prior, MAF(2, hidden_features=(8,)), var=["x"])
    >>> print(p.prob_joint_factorized_and_text)
    p(x) = p(x=f^{-1}_{flow}(z))
    >>> p.get_log_prob({"x": torch.randn(4, 2)}).shape
    torch.Size([4])
    """

    distribution_name = "InverseTransformedDistribution"
    _flow_text = "f^{-1}_{flow}"
    _score_direction = "forward"

    def __init__(
        self,
        prior: Distribution,
        flow: Flow,
        var: Sequence[str] | str,
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__(prior, flow, var, cond_var, tolist(cond_var), name, features_shape)

    @property
    def flow_output_var(self) -> list[str]:
        """The flow's output variable: the prior's variable."""
        return list(self.prior.var)

    #: ``return_hidden`` (Pixyz's, default ``True``): whether the prior's variable is returned with ``var``.
    _extra_sample_options = ("return_hidden",)

    def _pixyz_sample_options(
        self, out: dict[str, torch.Tensor], entry: _Drawn | None, value: torch.Tensor, options: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        if not options.get("return_hidden", True):
            out = {self._var[0]: out[self._var[0]]}
        return out

    def inference(
        self, x_dict: Mapping[str, Any], return_all: bool = True, compute_jacobian: bool = False
    ) -> dict[str, torch.Tensor]:
        """Map the data to the prior's space: ``{z: f(x, y)}`` (plus the inputs with ``return_all``).

        As Pixyz: with ``compute_jacobian=True`` :attr:`logdet_jacobian` then holds
        :math:`\\log|\\det \\partial f/\\partial x|` per data point (shape ``(*sample_shape, batch)``).
        """
        x_dict = self._as_dict(x_dict, "inference")
        self._require(x_dict, self.var + self.input_var, "inference")
        value = x_dict[self._var[0]]
        z, logdet = self._run_flow("forward", value, x_dict, value.ndim - self._n_feat(value), compute_jacobian)
        out = {self.prior.var[0]: z}
        if return_all:
            out = {**x_dict, **out}
        if compute_jacobian:  # reported for the caller, never read here
            self.flow._logdet_jacobian = self._logdet("forward", logdet)
        return out

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        pv = self.prior.var[0]
        if spec.batch_n is None and self._flow_cond_var:
            y0 = x_dict[self._flow_cond_var[0]]
            if isinstance(y0, torch.Tensor) and y0.ndim:
                spec = spec._replace(batch_n=y0.shape[0])
        z = self.prior._sample(x_dict, ctx=ctx, spec=spec)[pv]
        n_lead = len(spec.sample_shape) + 1
        # A flow written for Pixyz gets its inverse's log-det only from an extra forward pass (with its
        # side effects in training mode): then the sample is scored when, and if, a loss asks.
        jacobian = not _pixyz_inverse(self.flow)
        try:
            x, logdet_inv = self._run_flow("inverse", z, x_dict, n_lead, jacobian)
        except NotDefinedError as e:
            raise NotDefinedError(f"{self._owner()}: sampling needs the flow's inverse: {e}") from e
        if jacobian:
            ld = self._logdet("inverse", logdet_inv)
            lp = self._prior_log_prob(x_dict, ctx, z, n_lead) - ld
            self._remember(ctx, x, lp, x.ndim - n_lead, x_dict, -ld)
        return {self._var[0]: x, pv: z}
