"""The directed graph of a distribution's factors: the order in which a product samples and scores them
(:func:`sampling_order`), and its drawing as Graphviz DOT text (no dependency)."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._latex import convert_latex_name
from .._options import check_options
from ..errors import GraphError
from ..utils import tolist

__all__ = ["DistributionGraph", "Factor", "sampling_order"]

def sampling_order(factors: Sequence[Any]) -> tuple[list[int], dict[str, Any]]:
    """The order in which a product of ``factors`` draws them, parents first, and each variable's factor.

    A variable produced by two factors, or factors that condition on each other in a cycle, make no
    directed graph: both raise :class:`~pixyz_like.errors.GraphError` naming the factors.

    >>> from pixyz_like.distributions import Normal
    >>> px = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> pz = Normal(loc=0., scale=1., var=["z"])
    >>> sampling_order([px, pz])[0]
    [1, 0]
    """
    producers: dict[str, Any] = {}
    for f in factors:
        for v in f.var:
            if v in producers:
                raise GraphError(
                    f"cannot multiply: variable {v!r} is produced by both {producers[v].prob_text} and "
                    f"{f.prob_text}; rename one with replace_var"
                )
            producers[v] = f
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for i, f in enumerate(factors):
        deps = [j for j, g in enumerate(factors) if j != i and set(f.cond_var) & set(g.var)]
        sorter.add(i, *deps)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as e:
        cycle = " -> ".join(factors[i].prob_text for i in e.args[1])
        raise GraphError(f"cannot multiply: the factors form a cycle ({cycle})") from e
    return order, producers


#: The sampling options a factor of a product can be given with :meth:`DistributionGraph.set_option`.
FACTOR_OPTIONS = ("batch_n", "sample_shape", "reparam", "sample_mean")


class Factor:
    """One factor of a distribution's graph: an atomic distribution and its own sampling options.

    ``option`` (Pixyz's name) holds the options set by :meth:`DistributionGraph.set_option`; it is
    the factor distribution's setting, so every graph of a product that holds it sees the same value.

    >>> from pixyz_like.distributions import Normal
    >>> f = Factor(Normal(loc=0., scale=1., var=["y"]))
    >>> f.option = {"batch_n": 4}
    >>> f.option, f.var, f.cond_var
    ({'batch_n': 4}, ['y'], [])
    """

    def __init__(self, dist: Any) -> None:
        self.dist = dist

    @property
    def option(self) -> dict[str, Any]:
        return dict(getattr(self.dist, "_factor_option", {}))

    @option.setter
    def option(self, value: Mapping[str, Any]) -> None:
        value = dict(value)
        check_options(f"{self.dist.prob_text}: a factor's option", value, FACTOR_OPTIONS)
        self.dist._factor_option = value

    @property
    def var(self) -> list[str]:
        return list(self.dist.var)

    @property
    def cond_var(self) -> list[str]:
        return list(self.dist.cond_var)

    def __repr__(self) -> str:
        return f"Factor({self.dist.prob_text}, option={self.option})"


class DistributionGraph:
    """Nodes are variables; an edge ``a -> b`` means ``b``'s factor is conditioned on ``a``.

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], name="p_prior")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> print((p * prior).graph.to_dot())
    digraph {
      "z" [label="z"];
      "x" [label="x"];
      "z" -> "x" [label="p"];
    }
    """

    def __init__(self, factors: Sequence, var: Sequence[str], cond_var: Sequence[str], owner: Any = None) -> None:
        self.factors = list(factors)
        self.var = list(var)
        self.cond_var = list(cond_var)
        self._owner = owner

    # ------------------------------------------------------------------ Pixyz's DistGraph API
    @property
    def name(self) -> str:
        """The name of the distribution this graph belongs to (setting it renames the distribution)."""
        return self._owner.name if self._owner is not None else "p"

    @name.setter
    def name(self, value: str) -> None:
        if self._owner is None:
            raise AttributeError("this graph belongs to no distribution to rename")
        self._owner.name = value

    def _factors_from_variable(self, var: str) -> Iterator[Factor]:
        """The factors that generate ``var``."""
        return (Factor(f) for f in self.factors if var in f.var)

    def set_option(self, option_dict: Mapping[str, Any], var: Iterable[str]) -> None:
        """Give the factors generating ``var`` their own sampling options (``batch_n``, ``sample_shape``...).

        A product samples those factors with these options, as Pixyz's ``DistGraph.set_option`` does;
        an empty dict clears them. The options are the factor distribution's own setting.

        >>> import torch
        >>> from pixyz_like.distributions import Normal
        >>> joint = Normal(loc="y", scale=1., var=["x"], cond_var=["y"]) * Normal(loc=0., scale=1., var=["y"])
        >>> joint.graph.set_option({"batch_n": 4, "sample_shape": (2,)}, ["y"])
        >>> {k: tuple(v.shape) for k, v in joint.sample().items()}
        {'x': (2, 4), 'y': (2, 4)}
        >>> joint.graph.set_option({}, ["y"])
        """
        for v in tolist(var):
            found = list(self._factors_from_variable(v))
            if not found:
                raise KeyError(f"{self.name}: no factor of this graph generates {v!r}")
            for factor in found:
                factor.option = option_dict

    def visible_graph(self, dotmode: bool = False) -> Any:
        """The graph as a ``networkx.DiGraph`` (Pixyz's drawing helper; needs ``networkx``).

        Nodes are the variables, written ``$x$`` for matplotlib's math text, or plain with
        ``dotmode=True`` (each with a ``texlbl`` attribute, for ``write_dot``).

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * Normal(loc=0., scale=1., var=["z"])
        >>> sorted(p.graph.visible_graph().edges())
        [('$z$', '$x$')]
        """
        try:
            import networkx as nx
        except ImportError as e:  # pragma: no cover - networkx is in the test extra
            raise ImportError("DistributionGraph.visible_graph needs networkx: pip install networkx") from e
        graph = nx.DiGraph()
        for parent, child, _ in self.edges:
            graph.add_edge(parent if dotmode else f"${parent}$", child if dotmode else f"${child}$")
        for f in self.factors:
            for v in f.var:
                graph.add_node(v if dotmode else f"${v}$")
        if dotmode:
            for v in graph:
                graph.add_node(v, texlbl=f"${v}$")
        return graph

    def __str__(self) -> str:
        lines = [f"{self.name}: variables {self.var}, conditioned on {self.cond_var}"]
        lines += [f"  {f.prob_text}" + (f" option={f._factor_option}" if getattr(f, "_factor_option", None) else "")
                  for f in self.factors]
        return "\n".join(lines)

    @property
    def edges(self) -> list[tuple[str, str, str]]:
        """``(parent, child, factor name)`` triples."""
        return [(c, v, f.name) for f in self.factors for v in f.var for c in f.cond_var]

    def to_dot(self) -> str:
        """Graphviz DOT text; conditioning (observed) variables are drawn filled."""
        lines = ["digraph {"]
        nodes = []
        for f in self.factors:
            for v in list(f.cond_var) + list(f.var):
                if v not in nodes:
                    nodes.append(v)
        for v in nodes:
            style = ", style=filled" if v in self.cond_var else ""
            lines.append(f'  "{v}" [label="{convert_latex_name(v)}"{style}];')
        for parent, child, name in self.edges:
            lines.append(f'  "{parent}" -> "{child}" [label="{convert_latex_name(name)}"];')
        lines.append("}")
        return "\n".join(lines)

    def _repr_svg_(self) -> str | None:  # pragma: no cover - only when graphviz happens to be installed
        try:
            import graphviz  # type: ignore
        except ImportError:
            return None
        return graphviz.Source(self.to_dot())._repr_image_svg_xml()
