"""Trackers that learn from every request, and the stores they keep it in.

Stores (:mod:`.store`, :mod:`.sqlite`, :mod:`.redis`) sit behind one small interface; trackers
(performance, circuit breaker, feedback, A/B tests, rate limits) are registered by the built-in
plugin like any other kind and fed only by the orchestrator's events.
"""
