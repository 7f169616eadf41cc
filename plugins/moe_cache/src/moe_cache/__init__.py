"""A response cache for the gateway: a repeated call to an expert is answered from memory.

The ``response-cache`` tracker implements the core's :class:`~moe_core.run.CallCache`: every
expert call asks it first (:mod:`.tracker`). An entry's key is a hash of the request as the
expert gets it and of the expert's configuration (:mod:`.keys`); entries live in memory, SQLite
or Redis with a time to live and a bound on their number (:mod:`.stores`, :mod:`.sqlite`,
:mod:`.redis`). The semantic mode also answers a question worded differently, by embedding
similarity (:mod:`.semantic`). Callers opt out per request with ``Cache-Control`` (read by
:mod:`.middleware`) or ``moe: {cache: false}``.
"""
