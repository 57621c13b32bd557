"""Composition root: config -> adapters -> pipeline -> trio nurseries, signals, drain."""
