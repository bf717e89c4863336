"""A Griffe extension that keeps private classes out of the API reference's "Bases:" lines.

A public class deriving from a private helper (``class KullbackLeibler(_Binary)``) would show
``Bases: _Binary``, a name the reference does not document. This extension replaces each private
base (a name starting with ``_``) by that base's own bases, recursively, so the line names the
nearest public ancestors (``Bases: Loss``). Only the rendered copy changes; the code is untouched.
"""

from __future__ import annotations

from typing import Any

import griffe

__all__ = ["HidePrivateBases", "public_bases"]


def _is_private(expr: Any) -> bool:
    return str(expr).rsplit(".", 1)[-1].startswith("_")


def _resolve(cls: griffe.Class, expr: Any) -> griffe.Class | None:
    path = getattr(expr, "canonical_path", None) or str(expr)
    try:
        target = cls.modules_collection[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    while isinstance(target, griffe.Alias):
        target = target.final_target
    return target if isinstance(target, griffe.Class) else None


def public_bases(cls: griffe.Class, _seen: frozenset[str] = frozenset()) -> list[Any]:
    """``cls``'s bases with every private one replaced by its own (public) bases, each named once."""
    out: list[Any] = []
    for base in cls.bases:
        if not _is_private(base):
            out.append(base)
            continue
        target = _resolve(cls, base)
        if target is not None and target.path not in _seen:
            out.extend(public_bases(target, _seen | {target.path}))
    unique: dict[str, Any] = {}
    for base in out:
        unique.setdefault(str(base), base)
    return list(unique.values())


def _classes(obj: griffe.Object):
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue
        if isinstance(member, griffe.Class):
            yield member
        if isinstance(member, griffe.Module | griffe.Class):
            yield from _classes(member)


class HidePrivateBases(griffe.Extension):
    """Rewrite every class's bases, once the whole package is loaded (so bases can be resolved)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        classes = list(_classes(pkg))
        new = {cls.path: public_bases(cls) for cls in classes}  # computed first: bases read the originals
        for cls in classes:
            cls.bases = new[cls.path]
