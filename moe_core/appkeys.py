"""Typed keys for what the aiohttp application and each request carry, in one place."""

from __future__ import annotations

from aiohttp import web

from moe_core.orchestrator import MoE

MOE_KEY = web.AppKey("moe", MoE)
API_KEYS_KEY = web.AppKey("api_keys", frozenset)
BODY_LIMIT_KEY = web.AppKey("body_limit", int)
REQUEST_ID_KEY = web.RequestKey("request_id", str)
