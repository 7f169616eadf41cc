"""The model registry: what each model is, costs and can do, in one YAML file.

A registry lists models (the seed's ``models.yaml`` fields and more) and, per task type, which
models are preferred. A configuration points at it with a top-level ``registry:`` key, either a
path (relative to the config file) or a mapping::

    registry:
      path: registry.yaml
      experts:                      # optional: one expert per model that has no expert entry
        kind: openai
        base_url: ${MOE_UPSTREAM_BASE_URL:-http://127.0.0.1:11434/v1}
        api_key_env: MOE_UPSTREAM_API_KEY

Each registry model becomes the card of the expert with the same name (or of the expert whose
``registry_id`` names it); what the expert's own ``card:`` says wins over the registry. With
``experts:`` a template, every model no expert names gets an expert of that kind, named by the
model's id. The registry is expanded into plain expert entries before the configuration is
validated, so the rest of the gateway only ever sees experts and cards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from moe_core.errors import ConfigError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
PREFERRED = 1.0
BUDGET_CHOICE = 0.5
"""Preference a model gets for a task that lists it among the budget choices (preferred: 1)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RegistryModel(_Strict):
    """One model: the seed's ``models.yaml`` fields, plus vision/tools/JSON support and tags."""

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    description: str = ""
    capabilities: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    modalities_in: list[str] | None = None
    modalities_out: list[str] | None = None
    cost_per_1k_input: float = Field(ge=0)
    cost_per_1k_output: float = Field(ge=0)
    context_window: int = Field(ge=1)
    max_output_tokens: int | None = Field(None, ge=1)
    quality_score: float = Field(
        ge=0, le=1, validation_alias=AliasChoices("quality_score", "quality")
    )
    latency_p50_ms: float | None = Field(None, ge=0)
    latency_p95_ms: float | None = Field(None, ge=0)
    supports_streaming: bool = True
    supports_tools: bool = False
    supports_vision: bool = False
    supports_json: bool = Field(
        False, validation_alias=AliasChoices("supports_json", "supports_json_mode")
    )
    supports_system_prompt: bool = True
    rate_limit_rpm: int | None = Field(None, ge=1)
    rate_limit_tpm: int | None = Field(None, ge=1)
    enabled: bool = True
    fallback_models: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("fallback_models", "fallbacks")
    )
    tags: list[str] = Field(default_factory=list)
    task_preferences: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    expert: dict[str, Any] = Field(
        default_factory=dict,
        description="Options for the expert made from the template (e.g. the upstream's name).",
    )

    @model_validator(mode="after")
    def _latencies_in_order(self) -> RegistryModel:
        p50, p95 = self.latency_p50_ms, self.latency_p95_ms
        if p50 is not None and p95 is not None and p95 < p50:
            raise ValueError(f"latency_p95_ms ({p95:g}) is below latency_p50_ms ({p50:g})")
        return self

    def card(self, task_preferences: dict[str, float]) -> dict[str, Any]:
        """The :class:`~moe_core.models.ExpertCard` fields this entry sets."""
        modalities_in = self.modalities_in or ["text", *(["image"] if self.supports_vision else [])]
        return {
            "provider": self.provider,
            "description": self.description,
            "modalities_in": modalities_in,
            "modalities_out": self.modalities_out or ["text"],
            "capabilities": list(self.capabilities),
            "domains": list(self.domains),
            "cost_per_1k_input": self.cost_per_1k_input,
            "cost_per_1k_output": self.cost_per_1k_output,
            "quality": self.quality_score,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "supports_streaming": self.supports_streaming,
            "supports_tools": self.supports_tools,
            "supports_vision": self.supports_vision or "image" in modalities_in,
            "supports_json": self.supports_json,
            "supports_system_prompt": self.supports_system_prompt,
            "enabled": self.enabled,
            "tags": list(self.tags),
            "task_preferences": {**task_preferences, **self.task_preferences},
            "rate_limit_rpm": self.rate_limit_rpm,
            "rate_limit_tpm": self.rate_limit_tpm,
        }


class TaskPreference(_Strict):
    """Models to favour for one task type: ``preferred`` first, ``budget`` when cost matters."""

    preferred: list[str] = Field(default_factory=list)
    budget: list[str] = Field(default_factory=list)


class Registry(_Strict):
    """A whole registry file."""

    models: list[RegistryModel] = Field(min_length=1)
    task_preferences: dict[str, TaskPreference] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_are_known(self) -> Registry:
        ids = [model.id for model in self.models]
        known = set(ids)
        for index, model in enumerate(self.models):
            if ids.index(model.id) != index:
                raise ValueError(f"models[{index}].id: {model.id!r} is listed twice")
            for position, fallback in enumerate(model.fallback_models):
                if fallback not in known:
                    raise ValueError(
                        f"models[{index}].fallback_models[{position}]: unknown model {fallback!r}"
                    )
        for task, preference in self.task_preferences.items():
            for key in ("preferred", "budget"):
                for position, name in enumerate(getattr(preference, key)):
                    if name not in known:
                        raise ValueError(
                            f"task_preferences.{task}.{key}[{position}]: unknown model {name!r}"
                        )
        return self

    def cards(self) -> dict[str, dict[str, Any]]:
        """Card fields per model id, the top-level task preferences folded into each model's."""
        per_model: dict[str, dict[str, float]] = {model.id: {} for model in self.models}
        for task, preference in self.task_preferences.items():
            for name in preference.budget:
                per_model[name][task] = BUDGET_CHOICE
            for name in preference.preferred:
                per_model[name][task] = PREFERRED
        return {model.id: model.card(per_model[model.id]) for model in self.models}

    def model(self, model_id: str) -> RegistryModel:
        return next(model for model in self.models if model.id == model_id)


SECTION = "registry"


class RegistryConfig(_Strict):
    """``registry:`` in a configuration: where the registry is and how experts are made from it."""

    path: str | None = Field(None, description="A registry file, relative to the config file.")
    models: list[dict[str, Any]] | None = Field(None, description="The models, inline.")
    task_preferences: dict[str, Any] = Field(default_factory=dict)
    experts: dict[str, Any] | None = Field(
        None,
        description="Template for an expert per registry model no expert names (needs kind); "
        "${VAR} and ${VAR:-default} in its values are read from the environment.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RegistryConfig:
        if (self.path is None) == (self.models is None):
            raise ValueError("give either path (a registry file) or models (inline), not both")
        if self.path is None and not self.models:
            raise ValueError("models: at least one model is needed")
        if self.experts is not None and "kind" not in self.experts:
            raise ValueError("experts: the template needs a kind (e.g. kind: openai)")
        return self


def load_registry(source: str | os.PathLike[str]) -> Registry:
    """Read and validate a registry file; errors name the file and the key path."""
    path = Path(source)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read model registry {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"model registry {path} is not valid YAML: {exc}") from None
    return parse_registry(data, str(path))


def parse_registry(data: Any, origin: str, prefix: str = "") -> Registry:
    """Validate registry data from ``origin``; ``prefix`` is where it sits in a larger file."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid model registry in {origin}: the top level must be a mapping")
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, origin, prefix, data)) from None


def _format(exc: ValidationError, origin: str, prefix: str, data: dict[str, Any]) -> str:
    lines = [f"invalid model registry in {origin}:"]
    for error in exc.errors():
        location = prefix
        for part in error["loc"]:
            location += f"[{part}]" if isinstance(part, int) else f".{part}"
        location = location.lstrip(".")
        loc = error["loc"]
        if len(loc) > 1 and loc[0] == "models" and isinstance(loc[1], int):
            models = data.get("models") or []
            if loc[1] < len(models) and isinstance(models[loc[1]], dict) and "id" in models[loc[1]]:
                location += f" (model {models[loc[1]]['id']!r})"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        if not loc:  # a whole-registry check: its message starts with the key path
            lines.append(f"  {prefix + '.' if prefix else ''}{message}")
            continue
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)


def expand_registry(data: dict[str, Any], base_dir: Path, origin: str) -> dict[str, Any]:
    """The raw configuration with ``registry:`` applied to its ``experts`` (returns a copy).

    :param base_dir: where a relative registry path is resolved (the config file's folder).
    """
    raw = data.get("registry")
    if raw is None:
        return data
    if isinstance(raw, str):
        raw = {"path": raw}
    try:
        settings = RegistryConfig.model_validate(raw)
    except ValidationError as exc:
        from moe_core.config import format_validation_error

        raise ConfigError(format_validation_error(exc, origin, prefix="registry")) from None
    if settings.path is not None:
        registry = load_registry(base_dir / settings.path)
    else:
        inline = {"models": settings.models, "task_preferences": settings.task_preferences}
        registry = parse_registry(inline, origin, prefix="registry")
    cards = registry.cards()

    experts = data.get("experts")
    experts = dict(experts) if isinstance(experts, dict) else {}
    attached: dict[str, str] = {}  # expert name -> registry id
    for name, expert in experts.items():
        if not isinstance(expert, dict):
            continue  # the configuration's own validation reports it
        model_id = expert.pop("registry_id", None)
        if model_id is not None and model_id not in cards:
            raise ConfigError(
                f"invalid configuration in {origin}:\n  experts.{name}.registry_id: unknown "
                f"registry model {model_id!r}; registry models: {', '.join(cards)}"
            )
        model_id = model_id or (name if name in cards else None)
        if model_id is not None:
            attached[name] = model_id
    if settings.experts is not None:
        template = _expand_env(settings.experts, "registry.experts")
        taken = set(attached.values())
        for model in registry.models:
            if model.id not in taken and model.id not in experts:
                experts[model.id] = {**template, **model.expert}
                attached[model.id] = model.id

    expert_of = {model_id: name for name, model_id in attached.items()}
    for name, model_id in attached.items():
        expert = dict(experts[name])
        own_card = expert.get("card")
        expert["card"] = {**cards[model_id], **(own_card if isinstance(own_card, dict) else {})}
        if "fallbacks" not in expert:
            expert["fallbacks"] = [
                expert_of[fallback]
                for fallback in registry.model(model_id).fallback_models
                if fallback in expert_of
            ]
        experts[name] = expert
    expanded = dict(data)
    expanded["experts"] = experts
    expanded["registry"] = settings.model_dump(exclude_none=True)
    return expanded


def _expand_env(value: Any, path: str) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` in strings replaced from the environment."""
    if isinstance(value, dict):
        return {key: _expand_env(item, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_expand_env(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: environment variable {name} is not set (use ${{{name}:-default}} to give "
            "a default)"
        )

    return _ENV_REFERENCE.sub(substitute, value)
