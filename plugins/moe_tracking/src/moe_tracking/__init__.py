"""Trackers that learn from every request, the stores they keep it in, and their HTTP routes.

Stores (:mod:`.store`, :mod:`.sqlite`, :mod:`.redis`) sit behind one small interface and are
chosen by the ``tracking`` config section this plugin declares; trackers (performance, circuit
breaker, feedback, A/B tests, rate limits) are fed only by the gateway's events and offer what
they learn through the contract's protocols (:mod:`moe_core.signals`).
"""
