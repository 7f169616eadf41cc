"""Attribute names: OpenTelemetry's GenAI semantic conventions, and the gateway's own.

Spelt out here rather than imported from ``opentelemetry-semantic-conventions``, whose GenAI
names live in a private ``_incubating`` module that may move between releases.
"""

from __future__ import annotations

OPERATION = "gen_ai.operation.name"
SYSTEM = "gen_ai.system"
"""The provider; the conventions' older name, kept beside ``gen_ai.provider.name`` because
dashboards still group by it."""
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ERROR_TYPE = "error.type"

HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_PATH = "url.path"

MOE_REQUEST_ID = "moe.request_id"
MOE_GATE = "moe.gate"
MOE_EXPERTS = "moe.experts"
MOE_FALLBACKS = "moe.fallbacks"
MOE_STRATEGY = "moe.strategy"
MOE_RATIONALE = "moe.rationale"
MOE_CONFIDENCE = "moe.confidence"
MOE_EXPERT = "moe.expert"
MOE_EXPERTS_USED = "moe.experts_used"
MOE_STREAMED = "moe.streamed"
MOE_COST = "moe.cost_usd"
MOE_TRACKER = "moe.tracker"
MOE_EVENT = "moe.event"
