"""Autoregressive models (Pixyz's ``pixyz.autoregressions``, which Pixyz left empty)."""

__all__: list[str] = []
