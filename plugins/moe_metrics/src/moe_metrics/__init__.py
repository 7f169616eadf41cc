"""Prometheus metrics for the gateway: ``GET /metrics`` and the ``x-moe-overhead-ms`` header.

A tracker (:mod:`.tracker`) counts what the pipeline's events say (gate decisions, expert calls,
tokens, cost, fallbacks); a request observer (:mod:`.http`) counts what only HTTP sees (routes,
statuses, time to first byte, the gateway's own overhead) and serves the scrape; states that
exist whether or not a request comes (breakers, loaded models) are read at scrape time
(:mod:`.collector`). Every metric is defined in :mod:`.instruments`, and kept in plain
numbers (:mod:`.inprocess`) or, under several worker processes, in prometheus_client's own
objects (:mod:`.multiprocess`).
"""
