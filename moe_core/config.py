"""The configuration file: one YAML document, validated strictly, errors naming the exact key.

The core owns seven top-level sections (``server``, ``experts``, ``gate``, ``combiner``,
``trackers``, ``preparers``, ``plugins``); every other one belongs to the installed plugin that
declared it (:func:`moe_core.hookspecs.moe_config_sections`) and is validated against that
plugin's model.
Each instance's own options are checked against its kind's options model when the gateway is
built (:meth:`MoEConfig.validate_instance`). Every error names the key:
``experts.local.max_tokens: Input should be a valid integer``.

Secrets never live in the file: options such as ``api_key_env`` name the environment variable
that holds them.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from moe_core.errors import ConfigError
from moe_core.models import ExpertCard

if TYPE_CHECKING:
    from moe_core.plugins import MoEPluginManager

CONFIG_ENV = "MOE_CONFIG"
DEFAULT_ORIGIN = "<default configuration of the installed plugins>"
NO_DEFAULT = (
    "no configuration given (--config or $MOE_CONFIG) and no installed plugin provides a "
    "default one; install moe-domain-llms for local models, or write a configuration of "
    "OpenAI-compatible experts (see the README's 'Remote models')"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FrontendSettings(BaseModel):
    """``server.frontends.<name>``: ``enabled`` plus that frontend kind's own options."""

    model_config = ConfigDict(extra="allow")

    enabled: bool | None = Field(
        None, description="Mount it; default: whether the frontend is mounted by default."
    )

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
    body_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a request's body")
    shutdown_timeout_s: float = Field(30.0, ge=0)
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description="Processes serving the port (`auto`: one per CPU); see workers.py"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    access_log: bool = True
    admin_keys_env: str | None = Field(
        None,
        description="Environment variable holding the keys that may also reset breakers, run "
        "A/B tests, reload and change configuration; with keys set and no admin key, nobody may.",
    )
    drop_unsupported_params: bool = Field(
        False, description="Drop what an expert cannot honour (tools, images...) instead of a 400"
    )
    frontends: dict[str, FrontendSettings] = Field(default_factory=dict)

    def api_keys(self) -> list[str]:
        """The configured bearer keys (admin keys included), read from the environment."""
        return self._keys("api_keys_env") + self.admin_keys()

    def admin_keys(self) -> list[str]:
        return self._keys("admin_keys_env")

    def _keys(self, setting: str) -> list[str]:
        variable = getattr(self, setting)
        if not variable:
            return []
        keys = [key.strip() for key in os.environ.get(variable, "").split(",") if key.strip()]
        if not keys:
            raise ConfigError(
                f"server.{setting}: environment variable {variable} is not set or empty; set "
                f"it to one or more comma-separated keys, or remove {setting}"
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


class MoEConfig(BaseModel):
    """The whole configuration: the core's sections, plus those the plugins declared."""

    # Top-level keys beyond the core's are plugin sections, checked in load_config against the
    # models their plugins declared (unknown ones are errors there).
    model_config = ConfigDict(extra="allow")

    server: ServerConfig = Field(default_factory=ServerConfig)
    experts: dict[str, ExpertConfig] = Field(min_length=1)
    gate: GateConfig = Field(default_factory=lambda: GateConfig(kind="fixed"))
    combiner: InstanceConfig = Field(default_factory=lambda: InstanceConfig(kind="single"))
    trackers: dict[str, InstanceConfig] = Field(
        default_factory=lambda: {"memory": InstanceConfig(kind="memory")}
    )
    preparers: dict[str, InstanceConfig] = Field(default_factory=dict)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    _source: str = PrivateAttr("<dict>")
    _sections: dict[str, BaseModel | None] = PrivateAttr(default_factory=dict)
    _plugins: MoEPluginManager | None = PrivateAttr(None)

    @property
    def plugin_manager(self) -> MoEPluginManager | None:
        """The plugin manager this configuration was validated with."""
        return self._plugins

    @property
    def source(self) -> str:
        """Where this configuration came from, for error messages."""
        return self._source

    def section(self, name: str) -> Any:
        """A plugin's validated section: when the file leaves it out, its model's defaults, or
        ``None`` where the model has required fields.

        :raises ConfigError: when no installed plugin declared ``name``.
        """
        try:
            return self._sections[name]
        except KeyError:
            raise ConfigError(
                f"config section {name!r} is not declared by any installed plugin"
            ) from None

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


def add_tracker(data: dict[str, Any], name: str, kind: str, *, plugin: str, section: str) -> None:
    """Add a tracker of ``kind`` under ``name`` to a raw configuration (a plugin's
    ``moe_prepare_config``), unless one of that kind is configured already.

    The core's default trackers survive the addition; values of the wrong type are left alone,
    for validation to report with their key path. ``plugin`` and its ``section`` (whose
    ``enabled: false`` turns the addition off) are named when ``name`` is taken by another kind.
    """
    trackers = data.get("trackers")
    if trackers is None:
        default = MoEConfig.model_fields["trackers"].get_default(call_default_factory=True)
        trackers = {key: instance.model_dump() for key, instance in default.items()}
    if not isinstance(trackers, dict):
        return
    if any(
        isinstance(tracker, dict) and tracker.get("kind") == kind for tracker in trackers.values()
    ):
        return
    if name in trackers:
        raise ConfigError(
            f"trackers.{name}: the name is taken by another kind, and {plugin} adds its tracker "
            f"under it; rename that tracker, configure one of kind {kind!r} yourself, or set "
            f"{section}.enabled: false"
        )
    data["trackers"] = {**trackers, name: {"kind": kind}}


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
    *,
    plugins: MoEPluginManager | None = None,
) -> MoEConfig:
    """Load and validate a configuration.

    :param source: a path to a YAML file, a dict, a ready :class:`MoEConfig`, or ``None`` for
        ``$MOE_CONFIG`` if set, else the default the installed plugins provide.
    :param plugins: the plugin manager whose sections, rewrites and defaults apply; by default
        one with every installed plugin but those the configuration's ``plugins`` disables.
    """
    if isinstance(source, MoEConfig):
        return source
    if source is None and os.environ.get(CONFIG_ENV):
        source = os.environ[CONFIG_ENV]
    base_dir = Path.cwd()
    if source is None:
        plugins = plugins or _plugins_for({}, DEFAULT_ORIGIN)
        data, origin = plugins.default_config(), DEFAULT_ORIGIN
        if not data.get("experts"):
            raise ConfigError(NO_DEFAULT)
    elif isinstance(source, dict):
        data, origin = copy.deepcopy(source), "<dict>"
    else:
        path = Path(source)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        data, origin, base_dir = _parse_yaml(text, str(path)), str(path), path.parent
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {origin}: the top level must be a mapping")
    if plugins is None:
        plugins = _plugins_for(data, origin)
    plugins.prepare_config(data, base_dir, origin)
    try:
        config = MoEConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None
    config._source = origin
    config._sections = _plugin_sections(config, plugins)
    config._plugins = plugins
    return config


def _plugins_for(data: dict[str, Any], origin: str) -> MoEPluginManager:
    """The plugin manager a configuration asks for in its ``plugins`` section."""
    from moe_core.plugins import create_plugin_manager

    try:
        settings = PluginsConfig.model_validate(data.get("plugins") or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin, prefix="plugins")) from None
    return create_plugin_manager(disable=settings.disable, require=settings.require)


def _plugin_sections(config: MoEConfig, plugins: MoEPluginManager) -> dict[str, BaseModel | None]:
    """Every declared section validated against its plugin's model; undeclared ones refused."""
    declared = plugins.sections
    given = dict(config.__pydantic_extra__ or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise ConfigError(
            f"invalid configuration in {config.source}:\n  {unknown[0]}: unknown section; no "
            f"installed plugin declares it (plugin sections installed: {known})"
        )
    sections: dict[str, BaseModel | None] = {}
    for name, section in declared.items():
        try:
            sections[name] = section.model.model_validate(given.get(name) or {})
        except ValidationError as exc:
            if name not in given:
                sections[name] = None  # left out, and the model has no defaults to fall back on
                continue
            raise ConfigError(format_validation_error(exc, config.source, prefix=name)) from None
    return sections


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {exc}") from None
