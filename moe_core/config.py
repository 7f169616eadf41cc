"""The configuration file: one YAML document, validated strictly, errors naming the exact key.

Validation happens in two steps. The file's shape (top-level keys, server settings, which kind
each instance is) is checked here. Each instance's own options are checked against its kind's
options model once plugins are loaded (:meth:`MoEConfig.validate_instance`). Both report errors as
``experts.local.max_tokens: Input should be a valid integer``.

Secrets never live in the file: options such as ``api_key_env`` name the environment variable
that holds them.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from moe_core.errors import ConfigError
from moe_core.models import ExpertCard
from moe_core.registry import RegistryConfig, expand_registry

CONFIG_ENV = "MOE_CONFIG"
DEFAULT_CONFIG_RESOURCE = "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FrontendSettings(BaseModel):
    """``server.frontends.<name>``: ``enabled`` plus that frontend kind's own options."""

    model_config = ConfigDict(extra="allow")

    enabled: bool = True

    def options(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys_env: str | None = Field(
        None,
        description="Environment variable holding comma-separated bearer keys; unset = no auth.",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    shutdown_timeout_s: float = Field(30.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    access_log: bool = True
    frontends: dict[str, FrontendSettings] = Field(default_factory=dict)

    def api_keys(self) -> list[str]:
        """The configured bearer keys, read from the environment at startup."""
        if not self.api_keys_env:
            return []
        raw = os.environ.get(self.api_keys_env, "")
        keys = [key.strip() for key in raw.split(",") if key.strip()]
        if not keys:
            raise ConfigError(
                f"server.api_keys_env: environment variable {self.api_keys_env} is not set or "
                "empty; set it to one or more comma-separated keys, or remove api_keys_env"
            )
        return keys


class InstanceConfig(BaseModel):
    """An instance of a kind: ``kind`` plus that kind's options (checked against its model)."""

    model_config = ConfigDict(extra="allow")

    kind: str

    def options(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


class ExpertConfig(InstanceConfig):
    """An expert instance: the keys every expert has, plus its kind's options."""

    fallbacks: list[str] = Field(
        default_factory=list, description="Experts to try, in order, when this one fails."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Per-call limit; for streams, the longest wait for each chunk."
    )
    card: ExpertCard | None = Field(None, description="Overrides of the expert's own card.")
    registry_id: str | None = Field(
        None, description="The registry model whose card this expert gets; default: its name."
    )

    def card_overrides(self) -> dict[str, Any]:
        """Only the card fields the config really set, so the rest keep the expert's values."""
        if self.card is None:
            return {}
        return self.card.model_dump(include=self.card.model_fields_set)


class GateConfig(InstanceConfig):
    """The gate instance: the keys every gate has, plus its kind's options."""

    aliases: list[str] = Field(
        default_factory=list,
        description="Other model names that mean 'auto' (e.g. moe-auto): the gate chooses.",
    )


class PluginsConfig(_Strict):
    disable: list[str] = Field(default_factory=list)
    require: list[str] = Field(default_factory=list)


class TrackingConfig(_Strict):
    """``tracking``: where trackers keep what they learn, shared by every tracker that stores.

    ``memory`` forgets on restart; ``sqlite`` (the embedded default) keeps feedback and counters
    across restarts of one instance; ``redis`` shares them between every instance pointing at the
    same server, which is how several gateways behind a load balancer agree on breakers, limits,
    weights and A/B assignments.
    """

    store: Literal["memory", "sqlite", "redis"] = "sqlite"
    path: str | None = Field(
        None,
        description="SQLite file; default: $MOE_DATA_DIR, else $XDG_DATA_HOME/moe, else "
        "~/.local/share/moe, then tracking.sqlite3.",
    )
    redis_url_env: str = Field(
        "MOE_REDIS_URL", description="Environment variable holding the Redis URL."
    )
    redis_url: str | None = Field(
        None, description="The Redis URL itself; prefer redis_url_env when it holds a password."
    )
    prefix: str = Field("moe:", description="Prefix of every key in Redis (or row in SQLite).")
    refresh_s: float = Field(
        0.5, gt=0, description="How often trackers on a shared store refresh their local view."
    )


class MoEConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    experts: dict[str, ExpertConfig] = Field(min_length=1)
    gate: GateConfig = Field(default_factory=lambda: GateConfig(kind="fixed"))
    combiner: InstanceConfig = Field(default_factory=lambda: InstanceConfig(kind="single"))
    trackers: dict[str, InstanceConfig] = Field(
        default_factory=lambda: {"memory": InstanceConfig(kind="memory")}
    )
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    registry: RegistryConfig | None = Field(
        None, description="A model registry whose entries become expert cards (moe_core.registry)"
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    _source: str = PrivateAttr("<dict>")

    @property
    def source(self) -> str:
        """Where this configuration came from, for error messages."""
        return self._source

    @model_validator(mode="after")
    def _names_are_known(self) -> MoEConfig:
        reserved = {"auto", *self.gate.aliases}
        for name, expert in self.experts.items():
            if name in reserved:
                raise ValueError(f"experts.{name}: {name!r} is reserved for the gate")
            for fallback in expert.fallbacks:
                if fallback not in self.experts:
                    raise ValueError(
                        f"experts.{name}.fallbacks: unknown expert {fallback!r}; "
                        f"configured experts: {', '.join(self.experts)}"
                    )
        return self

    def validate_instance(
        self, path: str, options_model: type[BaseModel], raw: dict[str, Any]
    ) -> BaseModel:
        """Validate one instance's options against its kind's model, naming the key path."""
        try:
            return options_model.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, self.source, prefix=path)) from None


def format_validation_error(exc: ValidationError, source: str, prefix: str = "") -> str:
    lines = [f"invalid configuration in {source}:"]
    for error in exc.errors():
        location = ".".join(str(part) for part in (*prefix.split("."), *error["loc"]) if part != "")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {location or '<top>'}: {message}")
    return "\n".join(lines)


def load_config(
    source: str | os.PathLike[str] | dict[str, Any] | MoEConfig | None = None,
) -> MoEConfig:
    """Load and validate a configuration.

    :param source: a path to a YAML file, a dict, a ready :class:`MoEConfig`, or ``None`` for
        ``$MOE_CONFIG`` if set, else the embedded default.
    """
    if isinstance(source, MoEConfig):
        return source
    if source is None and os.environ.get(CONFIG_ENV):
        source = os.environ[CONFIG_ENV]
    if source is None:
        text = resources.files("moe_core").joinpath(DEFAULT_CONFIG_RESOURCE).read_text("utf-8")
        data, origin = _parse_yaml(text, "<embedded default config>"), "<embedded default config>"
    elif isinstance(source, dict):
        data, origin = source, "<dict>"
    else:
        path = Path(source)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        data, origin = _parse_yaml(text, str(path)), str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {origin}: the top level must be a mapping")
    base_dir = Path(source).parent if isinstance(source, str | os.PathLike) else Path.cwd()
    data = expand_registry(data, base_dir, origin)
    try:
        config = MoEConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None
    config._source = origin
    return config


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {exc}") from None
