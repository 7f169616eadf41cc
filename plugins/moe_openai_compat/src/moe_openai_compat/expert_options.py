"""The ``openai`` expert's options: where the upstream is, how to reach it, how long to wait.

The timeout defaults let a hung upstream fail over within seconds to a minute without
cutting off a slow model's long answer: the first byte of an answer gets a minute (a
non-streamed answer usually starts only once it is complete), the silence between two chunks
of a stream half of that, and opening a connection five seconds. A wait for a free pooled
connection has its own limit and does not count towards the expert's ``timeout_s``.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from moe_core import BaseURL, Options
from moe_openai_compat.proxy import DIRECT, Proxy


class AzureOptions(Options):
    """An Azure OpenAI deployment: calls go to
    ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`` with the
    key in an ``api-key`` header, as Azure's own SDKs send them."""

    deployment: str = Field(description="The deployment's name in the Azure OpenAI resource")
    api_version: str = Field(description="Azure's api-version, e.g. 2024-10-21")


class OpenAIExpertOptions(Options):
    base_url: BaseURL = Field(
        description="The API root, e.g. https://api.openai.com/v1 (for azure: the resource's "
        "endpoint, e.g. https://NAME.openai.azure.com)"
    )
    model: str | None = Field(None, description="The upstream's model name; default: the expert's")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key")
    azure: AzureOptions | None = Field(None, description="Call an Azure OpenAI deployment")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers on every call (non-secret values)"
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra headers whose values are secrets: header name to environment variable",
    )
    query: dict[str, str] = Field(
        default_factory=dict, description="Extra query parameters on every call"
    )
    proxy: str | None = Field(
        None,
        description="http://[user:password@]host:port of an HTTP proxy for this expert, or "
        f"'{DIRECT}' for none; default: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY unless NO_PROXY "
        "names the host",
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Opening a connection (through the proxy and TLS included)"
    )
    first_byte_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Waiting for the answer to start; a non-streamed answer usually starts "
        "when it is complete, so this bounds a whole generation",
    )
    read_timeout_s: float = Field(
        30.0, gt=0, description="Longest silence once the answer has started (between chunks)"
    )
    pool_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for a free connection when max_connections are all busy "
        "(then a 503 expert_busy, and the fallbacks answer)",
    )
    max_connections: int = Field(100, ge=1)
    stream_usage: bool = Field(True, description="Ask the upstream for usage in streams")
    supports_n: bool = Field(
        True,
        description="The upstream answers n > 1 with n choices itself; false: the expert "
        "makes n calls and merges them (as it also does for choices an upstream left out)",
    )
    system_prompt: str | None = Field(
        None, description="Put first when the request has no system message (a domain expert)"
    )

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None and value != DIRECT:
            Proxy.parse(value)
        return value
