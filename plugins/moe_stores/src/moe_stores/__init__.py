"""Store plumbing that more than one plugin needs, kept in one copy.

Plugins may not import each other (an import-linter contract), so what the stores of
``moe-cache`` and ``moe-tracking`` have in common lives in this library, which both depend on:
a SQLite connection in WAL mode used from one worker thread (:mod:`.sqlite`), and a Redis client
on a bounded connection pool that is known to answer before it is used (:mod:`.redis`). What each
store keeps, and how, stays in the store. This package registers nothing with the gateway and
imports neither the core nor any plugin.
"""
