"""The directed graph of a distribution's factors, drawable as Graphviz DOT text (no dependency)."""

from __future__ import annotations

from collections.abc import Sequence

from ..utils import convert_latex_name

__all__ = ["DistributionGraph"]


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

    def __init__(self, factors: Sequence, var: Sequence[str], cond_var: Sequence[str]) -> None:
        self.factors = list(factors)
        self.var = list(var)
        self.cond_var = list(cond_var)

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

    def _repr_svg_(self):  # pragma: no cover - only when graphviz happens to be installed
        try:
            import graphviz  # type: ignore
        except ImportError:
            return None
        return graphviz.Source(self.to_dot())._repr_image_svg_xml()
