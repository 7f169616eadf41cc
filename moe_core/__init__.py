"""moe: a plugin-based mixture-of-experts gateway.

The public API for plugin authors and embedders is re-exported here.
"""

from moe_core.appkeys import MOE_KEY
from moe_core.config import MoEConfig, load_config
from moe_core.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    ConfigError,
    ExpertFailed,
    ExpertTimeout,
    ExpertUnavailable,
    GateError,
    InvalidRequest,
    ModelNotFound,
    MoEError,
    NoEligibleExpert,
    NotFound,
    PayloadTooLarge,
    PluginError,
    RateLimited,
    UpstreamError,
)
from moe_core.models import (
    ChatMessage,
    ChatRequest,
    Delta,
    ExpertCard,
    ExpertResult,
    MoEMetadata,
    MoEResponse,
    RoutingDecision,
    RoutingHints,
    Usage,
)
from moe_core.orchestrator import MoE, MoEStream
from moe_core.parts import (
    Combiner,
    Expert,
    Frontend,
    Gate,
    Scorer,
    Tracker,
    Verdict,
    require_known_experts,
)
from moe_core.plugins import (
    BaseURL,
    CombinerOptions,
    Options,
    Register,
    create_plugin_manager,
    hookimpl,
)
from moe_core.router import MoERouter, RoutingRequest
from moe_core.run import Run

__all__ = [
    "MOE_KEY",
    "AuthenticationFailed",
    "BaseURL",
    "BudgetExceeded",
    "ChatMessage",
    "ChatRequest",
    "Combiner",
    "CombinerOptions",
    "ConfigError",
    "Delta",
    "Expert",
    "ExpertCard",
    "ExpertFailed",
    "ExpertResult",
    "ExpertTimeout",
    "ExpertUnavailable",
    "Frontend",
    "Gate",
    "GateError",
    "InvalidRequest",
    "MoE",
    "MoEConfig",
    "MoEError",
    "MoEMetadata",
    "MoEResponse",
    "MoERouter",
    "MoEStream",
    "ModelNotFound",
    "NoEligibleExpert",
    "NotFound",
    "Options",
    "PayloadTooLarge",
    "PluginError",
    "RateLimited",
    "Register",
    "RoutingDecision",
    "RoutingHints",
    "RoutingRequest",
    "Run",
    "Scorer",
    "Tracker",
    "UpstreamError",
    "Usage",
    "Verdict",
    "create_plugin_manager",
    "hookimpl",
    "load_config",
    "require_known_experts",
]
