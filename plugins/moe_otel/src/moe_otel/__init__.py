"""OpenTelemetry traces of the gateway: a span per request, with children for the gate, each
expert call and each tracker, carrying the GenAI semantic conventions' attributes.

Spans are made from the pipeline's events (:mod:`.tracker`) and an HTTP middleware
(:mod:`.http`) that continues a caller's W3C trace; :mod:`.provider` decides where they go.
"""
