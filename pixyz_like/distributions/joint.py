r"""Composite distributions: products (``p * q``), renamed variables and marginals.

A product is a directed acyclic graph of atomic factors. It is checked when built: a variable
produced by two factors or a cycle is refused at once, not at sampling time. Factors are sampled
and scored in topological order (:func:`~pixyz_like.distributions.graph.sampling_order`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .._batch import infer_batch_n, repeat_batch
from .._context import EvalContext
from .._latex import convert_latex_name
from ..errors import GraphError, NotDefinedError, ShapeError
from ..utils import tolist
from . import _validation
from .distributions import Distribution, DistributionBase
from .graph import sampling_order
from .protocol import SampleSpec, ScoreSpec

__all__ = ["MultiplyDistribution", "ReplaceVarDistribution", "MarginalizeVarDistribution", "Underlying", "underlying"]


def _appearance(d: Distribution) -> list[str]:
    """The variables of ``d`` in order of first appearance, conditions included (see ``MultiplyDistribution``)."""
    found = d.__dict__.get("_appearance")
    return list(found) if found is not None else list(d.var) + list(d.cond_var)


class MultiplyDistribution(Distribution):
    r"""The product of distributions, a joint over the union of their variables.

    ``p(x|z) * p_prior(z)`` is the joint ``p(x,z)``; its log-density is the sum of the factors' and a
    sample is drawn factor by factor in topological order. The joint takes the name of its left
    operand, as in Pixyz (``q * f`` prints ``q(z,h|x) = f(h|z)q(z|x)``); set ``joint.name`` to rename it.

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_prior")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> print((p * prior).prob_joint_factorized_and_text)
    p(x,z) = p(x|z)p_{prior}(z)
    >>> print((prior * p).prob_joint_factorized_and_text)
    p_{prior}(z,x) = p(x|z)p_{prior}(z)
    """

    _factors: nn.ModuleList  # the atomic factors in sampling (topological) order

    def __init__(self, a: Distribution, b: Distribution) -> None:
        factors = a.factors() + b.factors()
        # Pixyz's order: each variable where it first appears, reading the factors in multiplication
        # order and each factor's variables before its conditions (p(x|y,a)p(z|x,y) -> x, y, a, z).
        seen = list(dict.fromkeys(_appearance(a) + _appearance(b)))
        produced = {v for f in factors for v in f.var}
        self._setup(factors, name=a.name, var_order=[v for v in seen if v in produced])
        self._appearance = seen

    @classmethod
    def from_factors(
        cls, factors: Sequence[Distribution], name: str = "p", var_order: Sequence[str] | None = None,
        _validate_replace: tuple[Distribution, Mapping[str, str]] | None = None,
    ) -> MultiplyDistribution:
        """Build a joint from a list of atomic factors."""
        if _validate_replace is not None:
            ReplaceVarDistribution._validate(*_validate_replace)
        obj = cls.__new__(cls)
        obj._setup(list(factors), name=name, var_order=var_order)
        return obj

    def _setup(self, factors: list[Distribution], name: str, var_order: Sequence[str] | None) -> None:
        order, producers = sampling_order(factors)
        ordered = [factors[i] for i in order]
        var = list(dict.fromkeys(list(var_order or []) + [v for f in factors for v in f.var]))
        cond = list(dict.fromkeys(v for f in ordered for v in f.cond_var if v not in producers))
        super().__init__(var=var, cond_var=cond, name=name)
        self._factors = nn.ModuleList(ordered)
        # Decided once here, the factors being fixed: which factors have no inputs at all (they get the
        # batch size from the caller), and the joint's inputs. A variable is an input unless a factor
        # generates it; a data factor (EmpiricalDistribution) reads its variable from the input dict, so
        # that variable stays an input of the joint.
        self._roots = tuple(len(f.input_var) == 0 for f in ordered)
        # (the factors as a tuple, and which leave the check of their draw to the joint: see _draw_factors)
        self._factors_seq = tuple(ordered)
        self._defers = tuple(bool(getattr(f, "_draw_shows_invalid", ())) for f in ordered)
        made = {v for f in ordered for v in f.var if v not in f.input_var}
        # (a sample given none of the factors' variables observes no factor: see _sample)
        self._all_var, self._none_observed = frozenset(v for f in ordered for v in f.var), (False,) * len(ordered)
        self._input_var = tuple(dict.fromkeys(v for f in ordered for v in f.input_var if v not in made))

    def factors(self) -> list[Distribution]:
        # Each was checked a Distribution when the joint was built; ModuleList's stubs only know Module.
        return cast("list[Distribution]", list(self._factors))

    @property
    def input_var(self) -> list[str]:
        return list(self._input_var)

    @property
    def has_reparam(self) -> bool:  # type: ignore[override]
        return all(f.has_reparam for f in self.factors())

    @property
    def distribution_name(self) -> str:  # type: ignore[override]
        return " * ".join(f.distribution_name for f in self.factors())

    @property
    def prob_factorized_text(self) -> str:
        # Written right to left: the factor sampled first stands last, as in p(x|z)p(z).
        return "".join(f.prob_text for f in reversed(self.factors()))

    def _check_reparam(self) -> None:  # reparameterise where each factor can; others are detached
        return None

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        batch_n, sample_shape = spec.batch_n, spec.sample_shape
        n = sample_shape.numel() if len(sample_shape) else 1
        inputs = self._input_var
        batch = infer_batch_n(x_dict, inputs)
        if batch is None:
            batch = batch_n
        elif batch_n is not None and batch_n != batch:
            raise ShapeError(f"{self._owner()}: batch_n={batch_n} conflicts with the batch size {batch} of its inputs")
        # Factors whose variables are all given are observed: their values are kept, not redrawn.
        factors = self._factors_seq
        if self._all_var.isdisjoint(x_dict):  # (the usual call: only the inputs given, every factor drawn)
            observed: Sequence[bool] = self._none_observed
            needed: Sequence[str] = inputs
        else:
            observed = [all(v in x_dict for v in f._var) for f in factors]
            needed = [*inputs, *(v for f, o in zip(factors, observed) if o for v in f._var)]
        if len(sample_shape):
            # Sample dims are folded into the batch so each factor's network runs once on n * batch rows.
            base = batch if batch is not None else 1
            work = {
                v: repeat_batch(x_dict[v], n) if isinstance(x_dict[v], torch.Tensor) and x_dict[v].ndim else x_dict[v]
                for v in needed
            }
            root_batch: int | None = n * base
        else:
            work = {v: x_dict[v] for v in needed}
            root_batch = batch
        self._draw_factors(work, ctx, spec, root_batch, observed)
        out = {v: work[v] for v in self._var}
        if len(sample_shape):
            out = {v: t.reshape(*sample_shape, t.shape[0] // n, *t.shape[1:]) for v, t in out.items()}
        return out

    def _draw_factors(self, work: dict[str, Any], ctx: EvalContext, spec: SampleSpec, root_batch: int | None,
                      observed: Sequence[bool]) -> None:
        """Draw each factor not observed into ``work``, in order. A factor whose sample shows its invalid
        parameters (``DistributionBase._draw_shows_invalid``) leaves their check to this joint: the
        samples left so are checked at once, at the end and before any factor that does not so defer
        (which would otherwise see a NaN input first), and a factor is looked at only when one is not
        finite, to name what made it so."""
        root_spec, inner_spec = spec.for_factor(root_batch), spec.for_factor(None)
        saved = ctx.sampling_factor, ctx.deferred_draws  # (a joint drawn inside another's factor: its own)
        pending: list[Any] = []
        ctx.deferred_draws = pending
        try:
            for f, is_root, is_observed, defers in zip(self._factors_seq, self._roots, observed, self._defers):
                if is_observed:
                    continue
                if pending and not defers:
                    _check_draws(pending)
                ctx.sampling_factor = f
                option = f.__dict__.get("_factor_option")  # (getattr on a Module raises inside when unset: slow)
                if option:  # the factor's own options (graph.set_option), as Pixyz samples them
                    own = SampleSpec(
                        option.get("batch_n", root_batch if is_root else None),
                        torch.Size(option.get("sample_shape", ())),
                        option.get("reparam", spec.reparam), option.get("sample_mean", spec.sample_mean),
                    )
                    work.update(f._sample(work, ctx=ctx, spec=own))
                else:
                    # (the method read off the class: an nn.Module's attribute read is slow)
                    work.update(type(f)._sample(f, work, ctx=ctx, spec=root_spec if is_root else inner_spec))
        finally:
            ctx.sampling_factor, ctx.deferred_draws = saved
        if pending:
            _check_draws(pending)

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        sample_shape, batch = self._value_sample_shape(x_dict)
        n = sample_shape.numel() if len(sample_shape) else 1
        if n > 1 or len(sample_shape):
            # Values carry sample dims (e.g. from sample(sample_shape=...)): fold them into the batch
            # so networks see (n * batch, ...) rows, then restore sample_shape + (batch,).
            work = {}
            for k, v in x_dict.items():
                if isinstance(v, torch.Tensor) and v.shape[: len(sample_shape) + 1] == sample_shape + (batch,):
                    v = v.reshape(n * batch, *v.shape[len(sample_shape) + 1 :])
                elif isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch:
                    v = repeat_batch(v, n)
                work[k] = v
            x_dict = work
        total = self._factors_total(x_dict, ctx, spec)
        if n > 1 or len(sample_shape):
            total = total.reshape(*sample_shape, batch, *total.shape[1:])
        return total

    def _factors_total(self, x_dict: dict[str, Any], ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        """The sum of the factors' log-densities. The factors whose score checks itself leave their
        check to this total (finite only if every term is): one check for the joint, and a factor is
        looked at only when the total is not finite, to name what made it so."""
        # (Saved and restored: a joint scored inside another's factor checks its own total.)
        saved = ctx.scoring_factor, ctx.deferred_checks
        pending: list[Any] = []
        ctx.deferred_checks = pending
        total: torch.Tensor | None = None
        try:
            for f in self.factors():
                ctx.scoring_factor = f
                lp = f._log_prob(x_dict, ctx=ctx, spec=spec)
                if total is not None and not spec.sum_features and lp.shape != total.shape:
                    raise NotDefinedError(
                        f"{self._owner()}: with sum_features=False the factors' log-densities must have one shape "
                        f"to be added, got {tuple(total.shape)} and {tuple(lp.shape)} ({f.prob_text}); use "
                        "sum_features=True, or score each factor separately"
                    )
                total = lp if total is None else total + lp
        finally:
            ctx.scoring_factor, ctx.deferred_checks = saved
        assert total is not None  # a joint has at least two factors
        if pending and not _validation.surely_finite(total):
            for f, entry, value in pending:
                f._name_invalid(entry, value)
        return total

    def _value_sample_shape(self, x_dict: Mapping[str, Any]) -> tuple[torch.Size, int]:
        """Sample dims of the given values, read off a factor whose feature shape is known."""
        for f in self.factors():
            fs = getattr(f, "_features_shape", torch.Size())
            if not len(fs) or not hasattr(f, "event_ndim"):
                continue
            v = x_dict[f.var[0]]
            lead = v.ndim - len(fs) - f.event_ndim
            if lead >= 2:
                return v.shape[: lead - 1], v.shape[lead - 1]
            return torch.Size(), 0
        return torch.Size(), 0

    def _last_single_var_factor(self, action: str) -> Distribution:
        last = self.factors()[-1]
        if len(last.var) != 1:
            raise NotDefinedError(f"{self._owner()}: {action} needs a joint whose last factor has one variable")
        return last

    def _ancestors_sampled(self, x_dict: Mapping[str, Any]) -> dict[str, Any]:
        work = dict(x_dict)
        for f in self.factors()[:-1]:
            if not all(v in work for v in f.var):
                work.update(f.sample(work, return_all=False))
        return work

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Mean of the last factor's variable, the other factors sampled (given values are kept)."""
        x_dict = self._as_dict(x_dict, "sample_mean")
        self._require(x_dict, self.input_var, "sample_mean")
        return self._last_single_var_factor("sample_mean").sample_mean(self._ancestors_sampled(x_dict))

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Variance of the last factor's variable, the other factors sampled (given values are kept)."""
        x_dict = self._as_dict(x_dict, "sample_variance")
        self._require(x_dict, self.input_var, "sample_variance")
        return self._last_single_var_factor("sample_variance").sample_variance(self._ancestors_sampled(x_dict))


def _check_draws(pending: list[Any]) -> None:
    """Check the samples the factors left to their joint, then forget them: one reduction for all; when
    one is not finite, each factor's parameters in drawing order, the first invalid one named (none
    invalid: an overflow of valid parameters, and the samples stand)."""
    if not _validation.surely_finite_many([p[2] for p in pending], [p[3] for p in pending]):  # (value, its shape)
        for f, entry, _, _ in pending:
            f._validate_params(entry.params, entry.from_forward)
    else:  # finite samples: every parameter they show was valid (a later reader of the memo need not check)
        for _, entry, _, _ in pending:
            entry.validated = True
    pending.clear()


class _View(Distribution):
    """A distribution made from another one, ``p``, whose family it reports: its name, whether it is
    reparameterised, and its networks (the base of renamed variables and of marginals)."""

    p: Distribution

    @property
    def distribution_name(self) -> str:  # type: ignore[override]  # a class attribute of the base, the view's here
        return self.p.distribution_name

    @property
    def has_reparam(self) -> bool:  # type: ignore[override]  # a class attribute of the base, the view's here
        return self.p.has_reparam

    def _check_reparam(self) -> None:
        self.p._check_reparam()

    def _network_text(self) -> str:
        return self.p._network_text()


class ReplaceVarDistribution(_View):
    """A view of an atomic distribution with some variables renamed; it shares the networks.

    Made by :meth:`Distribution.replace_var`: ``p.replace_var(z="y")`` reads ``y`` wherever ``p``
    read ``z``. The parameters are those of ``p`` (training one trains the other).

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> p_y = p.replace_var(z="y")
    >>> print(p_y.prob_text)
    p(x|y)
    >>> p_y.get_log_prob({"x": torch.zeros(1, 1), "y": torch.zeros(1, 1)})
    tensor([-0.9189])
    """

    def __init__(self, p: Distribution, replace_dict: Mapping[str, str], _check: bool = True) -> None:
        if _check:
            self._validate(p, replace_dict)
        rd = {k: v for k, v in replace_dict.items() if k in p.var or k in p.cond_var}
        super().__init__(
            var=[rd.get(v, v) for v in p.var],
            cond_var=[rd.get(v, v) for v in p.cond_var],
            name=p.name,
            features_shape=p.features_shape,
        )
        self.p = p
        self._replace = rd
        self._inverse = {v: k for k, v in rd.items()}
        self._hidden = frozenset(k for k in rd if k not in self._inverse)  # inner names renamed away

    @staticmethod
    def _validate(p: Distribution, replace_dict: Mapping[str, str]) -> None:
        known = set(p.var) | set(p.cond_var)
        unknown = sorted(k for k in replace_dict if k not in known)
        if unknown:
            raise GraphError(
                f"{p.prob_text}: replace_var got {unknown}, which are not among its variables {sorted(known)}"
            )
        for old, new in replace_dict.items():
            if not isinstance(new, str) or not new:
                raise TypeError(f"{p.prob_text}: replace_var({old}=...) needs a variable name, got {new!r}")
        renamed = [replace_dict.get(v, v) for v in list(p.var) + list(p.cond_var)]
        if len(set(renamed)) != len(renamed):
            raise GraphError(f"{p.prob_text}: replace_var({replace_dict}) would give two variables the same name")

    @property
    def input_var(self) -> list[str]:
        return [self._replace.get(v, v) for v in self.p.input_var]

    def _inner_name(self, name: str) -> str | None:
        """The name under which ``p`` reads the outer variable ``name``; ``None`` for an outer variable
        that carries an inner name being renamed: it is another variable, which ``p`` does not see (else
        the result would depend on the order of the dict: ``{"x_u": a, "x": b}`` would read ``b`` for
        ``x`` in a view made with ``replace_var(x="x_u")``)."""
        return None if name in self._hidden else self._inverse.get(name, name)

    def _to_inner(self, x_dict: Mapping[str, Any]) -> dict[str, Any]:
        """``x_dict`` under ``p``'s names, each variable as :meth:`_inner_name` reads it."""
        return {self._inverse.get(k, k): v for k, v in x_dict.items() if k not in self._hidden}

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        out = self.p._sample(self._to_inner(x_dict), ctx=ctx, spec=spec)
        return {self._replace.get(k, k): v for k, v in out.items()}

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        return self.p._log_prob(self._to_inner(x_dict), ctx=ctx, spec=spec)

    def get_params(self, params_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        return self.p.get_params(self._to_inner(self._as_dict(params_dict, "get_params")), **kwargs)

    def get_entropy(self, x_dict: Mapping[str, Any] | None = None, sum_features: bool = True,
                    feature_dims: Sequence[int] | None = None) -> torch.Tensor:
        return self.p.get_entropy(self._to_inner(self._as_dict(x_dict, "get_entropy")), sum_features, feature_dims)

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        return self.p.sample_mean(self._to_inner(self._as_dict(x_dict, "sample_mean")))

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        return self.p.sample_variance(self._to_inner(self._as_dict(x_dict, "sample_variance")))

    @property
    def base(self) -> Distribution:
        """The distribution under this view and any views it is made of (see :func:`underlying`).

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
        >>> p.replace_var(z="y").replace_var(y="w").base is p
        True
        """
        return underlying(self).base


@dataclass(frozen=True)
class Underlying:
    """A distribution seen through its renaming views: the distribution under them, and the names to reach it.

    ``rename`` maps each outer name that the views change to the name ``base`` reads it under;
    ``dropped`` holds the outer names that carry an inner name being renamed: they are other variables,
    which ``base`` does not see. Made by :func:`underlying`, once, when a formula is built; its
    :meth:`inputs` translates an input dict each time the formula is evaluated.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> view = underlying(p.replace_var(z="y"))
    >>> view.base is p, dict(view.rename), sorted(view.dropped)
    (True, {'y': 'z'}, ['z'])
    >>> view.inputs({"y": 1., "z": 2., "x": 3.})
    {'z': 1.0, 'x': 3.0}
    """

    base: Distribution
    rename: Mapping[str, str]
    dropped: frozenset[str]

    def inputs(self, x_dict: Mapping[str, Any]) -> dict[str, Any]:
        """``x_dict`` under ``base``'s own names: renamed variables under their inner names, dropped ones left out.

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
        >>> underlying(p).inputs({"z": 1.})  # no view: the dict itself
        {'z': 1.0}
        """
        if not self.rename and not self.dropped:
            return x_dict if isinstance(x_dict, dict) else dict(x_dict)
        return {self.rename.get(k, k): v for k, v in x_dict.items() if k not in self.dropped}

    def params(self, x_dict: Mapping[str, Any], ctx: EvalContext | None) -> dict[str, torch.Tensor]:
        """The parameters of ``base``, a parametric family, given the outer variables ``x_dict``.

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
        >>> underlying(p.replace_var(z="y")).params({"y": torch.ones(1, 1)}, None)["loc"]
        tensor([[1.]])
        """
        return self.params_and_shape(x_dict, ctx)[0]

    def params_and_shape(
        self, x_dict: Mapping[str, Any], ctx: EvalContext | None
    ) -> tuple[dict[str, torch.Tensor], torch.Size]:
        """The parameters of ``base`` and their checked broadcast shape, memoised together in ``ctx``.

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
        >>> underlying(p).params_and_shape({"z": torch.ones(3, 2)}, None)[1]
        torch.Size([3, 2])
        """
        base = self.base
        if not isinstance(base, DistributionBase):
            raise NotDefinedError(
                f"{base._owner()}: a {type(base).__name__} is not a parametric family, so it has no parameters "
                "to compute"
            )
        return base._params_and_shape(self.inputs(x_dict), ctx)


def _through(views: Sequence[ReplaceVarDistribution], name: str) -> str | None:
    """The name the distribution under ``views`` (outermost first) reads ``name`` as; ``None``: hidden."""
    for view in views:
        inner = view._inner_name(name)
        if inner is None:
            return None
        name = inner
    return name


def underlying(d: Distribution) -> Underlying:
    """``d`` seen through its renaming views (``replace_var``, nested or not): the distribution under them
    and the translation of the outer names, composed level by level as each view translates its inputs.

    Closed-form terms (KL, entropy) and composite families (product of experts, VampPrior) compute the
    parameters of the family under a view; they resolve it once with this, when they are built.

    >>> from pixyz_like.distributions import Normal
    >>> q = Normal(loc="a", scale="b", var=["z"], cond_var=["a", "b"])
    >>> view = underlying(q.replace_var(a="b", b="c").replace_var(c="d"))  # q(z|b,d)
    >>> view.base is q, dict(sorted(view.rename.items())), sorted(view.dropped)
    (True, {'b': 'a', 'd': 'b'}, ['a', 'c'])
    """
    views: list[ReplaceVarDistribution] = []
    while isinstance(d, ReplaceVarDistribution):
        views.append(d)
        d = d.p
    names = sorted({n for view in views for pair in view._replace.items() for n in pair})
    rename: dict[str, str] = {}
    dropped: set[str] = set()
    for name in names:
        inner = _through(views, name)
        if inner is None:
            dropped.add(name)
        elif inner != name:
            rename[name] = inner
    return Underlying(d, rename, frozenset(dropped))


class MarginalizeVarDistribution(_View):
    r"""The marginal :math:`\int p(x,z)\,dz` of a distribution over the remaining variables.

    Sampling draws the joint and drops the marginalised variables. The log-density has no closed form;
    estimate it with :func:`pixyz_like.losses.log_marginal` (importance sampling).

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_prior")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> p_x = (p * prior).marginalize_var("z")
    >>> print(p_x.prob_joint_factorized_and_text)
    p(x) = \int p(x|z)p_{prior}(z)dz
    >>> sorted(p_x.sample(batch_n=4))
    ['x']
    """

    def __init__(self, p: Distribution, marginalize_list: Sequence[str] | str) -> None:
        marginalize_list = tolist(marginalize_list)
        bad = [v for v in marginalize_list if v not in p.var]
        if bad:
            raise GraphError(f"{p.prob_text}: cannot marginalise {bad}, which are not among its variables {p.var}")
        rest = [v for v in p.var if v not in marginalize_list]
        if not rest:
            raise GraphError(f"{p.prob_text}: marginalising {marginalize_list} would leave no variable")
        super().__init__(var=rest, cond_var=p.cond_var, name=p.name, features_shape=p.features_shape)
        self.p = p
        self._marginalized = marginalize_list

    @property
    def input_var(self) -> list[str]:
        return self.p.input_var

    @property
    def prob_factorized_text(self) -> str:
        integrals = "\\int " * len(self._marginalized)
        d = "".join("d" + convert_latex_name(v) for v in self._marginalized)
        return f"{integrals}{self.p.prob_factorized_text}{d}"

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        out = self.p._sample(x_dict, ctx=ctx, spec=spec)
        return {k: v for k, v in out.items() if k not in self._marginalized}

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        raise NotDefinedError(
            f"{self._owner()}: the log-density of a marginal has no closed form; estimate it with "
            "pixyz_like.losses.log_marginal (importance sampling)"
        )

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        return self.p.sample_mean(x_dict)

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        return self.p.sample_variance(x_dict)
