"""Plugin discovery and the kind registry.

There is no global plugin manager: :func:`create_plugin_manager` returns a fresh one, so tests
and embedders can build one with exactly the plugins they want. Everything that can go wrong with
a plugin (it fails to import, misspells a hook, registers a kind twice, is required but missing)
is a :class:`PluginError` at startup naming the plugin and its distribution.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import pluggy
from pydantic import BaseModel

from moe_core import hookspecs
from moe_core.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from moe_core.http import RequestObserver

# Re-exported: plugins import the options bases from here.
from moe_core.options import BaseURL, CombinerOptions, Options  # noqa: F401

PROJECT = "moe"
ENTRY_POINT_GROUP = "moe"
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("fixed", "moe_core.builtins.fixed"),
    ("single", "moe_core.builtins.single"),
    ("memory", "moe_core.builtins.memory"),
    ("admin", "moe_core.builtins.admin"),
)
"""The core's own plugins, registered like installed ones and disabled the same way (by name,
in ``plugins.disable``): what a bare gateway needs and nothing more."""
CORE_SECTIONS = frozenset(
    {"server", "experts", "gate", "combiner", "trackers", "preparers", "plugins"}
)
MiddlewareStage = Literal["auth", "limits", "routes"]
MIDDLEWARE_STAGES: tuple[MiddlewareStage, ...] = ("auth", "limits", "routes")

hookimpl = pluggy.HookimplMarker(PROJECT)

Part = Literal["expert", "gate", "combiner", "tracker", "frontend", "scorer", "preparer"]
PARTS: tuple[Part, ...] = get_args(Part)
_HOOK_OF_PART: dict[Part, str] = {part: f"moe_register_{part}s" for part in PARTS}


class Register(Protocol):
    """The callback a ``moe_register_*`` hook receives."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] = ...,
        summary: str | None = ...,
    ) -> None: ...


class RegisterSection(Protocol):
    """The callback :func:`moe_core.hookspecs.moe_config_sections` receives."""

    def __call__(self, name: str, model: type[BaseModel]) -> None: ...


class AddMiddleware(Protocol):
    """The callback :func:`moe_core.hookspecs.moe_setup_app` receives."""

    def __call__(self, middleware: Any, *, stage: MiddlewareStage = "routes") -> None: ...


class AddRequestObserver(Protocol):
    """The other callback :func:`moe_core.hookspecs.moe_setup_app` receives."""

    def __call__(self, observer: RequestObserver) -> None: ...


@dataclass(frozen=True)
class Section:
    """A top-level configuration section a plugin declared."""

    name: str
    model: type[BaseModel]
    plugin: str


@dataclass(frozen=True)
class Kind:
    """A registered factory: what config names with ``kind: <name>``."""

    part: Part
    name: str
    factory: Callable[..., Any]
    options: type[BaseModel]
    plugin: str
    summary: str

    def build(self, name: str, options: BaseModel) -> Any:
        """Call the factory and check it made the part it claims to (an Expert for experts...)."""
        from moe_core import parts

        built = self.factory(name=name, options=options)
        expected = getattr(parts, self.part.capitalize())
        if not isinstance(built, expected):
            raise PluginError(
                f"{self.part} kind {self.name!r} of plugin {self.plugin!r} built a "
                f"{type(built).__name__}, not a moe_core.{expected.__name__}"
            )
        return built


@dataclass
class PluginInfo:
    """What ``GET /-/plugins`` and ``moe plugins`` report for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    kinds: dict[str, list[str]] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f'"{self.name}" (distribution {self.distribution or "unknown"})'

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class KindRegistry:
    """Every kind of every part, looked up by name with an error that lists what exists."""

    def __init__(self) -> None:
        self._kinds: dict[Part, dict[str, Kind]] = {part: {} for part in PARTS}

    def add(self, kind: Kind, plugins: dict[str, PluginInfo]) -> None:
        existing = self._kinds[kind.part].get(kind.name)
        if existing is not None:
            raise PluginError(
                f"{kind.part} kind {kind.name!r} is registered twice: by plugin "
                f"{plugins[existing.plugin].label} and by plugin {plugins[kind.plugin].label}; "
                "uninstall or disable one of them (plugins.disable in the config)"
            )
        self._kinds[kind.part][kind.name] = kind

    def get(self, part: Part, name: str) -> Kind:
        try:
            return self._kinds[part][name]
        except KeyError:
            known = ", ".join(sorted(self._kinds[part])) or "none"
            raise PluginError(
                f"unknown {part} kind {name!r}; installed {part} kinds: {known}. "
                "Is the plugin that provides it installed and not disabled?"
            ) from None

    def names(self, part: Part) -> list[str]:
        return sorted(self._kinds[part])

    def of_part(self, part: Part) -> list[Kind]:
        return [self._kinds[part][name] for name in sorted(self._kinds[part])]


class MoEPluginManager:
    """A typed facade over pluggy: the rest of the code never calls ``pm.hook`` itself."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._kinds: KindRegistry | None = None
        self._sections: dict[str, Section] | None = None

    def register(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        if name in self._infos:
            raise PluginError(
                f'plugin "{name}" is registered twice (second time from distribution '
                f"{distribution or 'unknown'}; first from {self._infos[name].distribution})"
            )
        info = PluginInfo(name=name, distribution=distribution, version=version)
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {info.label} is invalid: {exc}") from exc
        info.hooks = sorted(impl_name for impl_name in _hook_names(self.pm, plugin))
        self._infos[name] = info
        self._kinds = None
        self._sections = None

    def load_entrypoints(self, disable: Iterable[str] = ()) -> None:
        disabled = set(disable)
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.name in disabled or entry_point.name in self._infos:
                continue
            dist = entry_point.dist
            dist_name = dist.name if dist is not None else None
            try:
                plugin = entry_point.load()
            except Exception as exc:
                raise PluginError(
                    f'Error importing plugin "{entry_point.name}" from distribution '
                    f"{dist_name or 'unknown'} ({entry_point.value}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.register(
                plugin,
                entry_point.name,
                distribution=dist_name,
                version=dist.version if dist is not None else None,
            )

    def require(self, names: Iterable[str]) -> None:
        missing = [name for name in names if name not in self._infos]
        if missing:
            raise PluginError(
                f"required plugin(s) not installed or disabled: {', '.join(missing)}; "
                f"installed: {', '.join(sorted(self._infos))}"
            )

    @property
    def infos(self) -> dict[str, PluginInfo]:
        """Every registered plugin, with the kinds and config sections it registered."""
        self.kinds  # noqa: B018 - kinds are attributed to plugins while they are collected
        for info in self._infos.values():
            info.sections = [name for name, s in self.sections.items() if s.plugin == info.name]
        return self._infos

    @property
    def kinds(self) -> KindRegistry:
        """All kinds, collected by calling every ``moe_register_*`` hook once."""
        if self._kinds is None:
            self._kinds = self._collect_kinds()
        return self._kinds

    @property
    def sections(self) -> dict[str, Section]:
        """Every top-level configuration section a plugin declared, by name."""
        if self._sections is None:
            self._sections = self._collect_sections()
        return self._sections

    def _collect_sections(self) -> dict[str, Section]:
        sections: dict[str, Section] = {}
        for impl in self.pm.hook.moe_config_sections.get_hookimpls():
            plugin = impl.plugin_name

            def register(name: str, model: type[BaseModel], plugin: str = plugin) -> None:
                label = self._infos[plugin].label
                if name in CORE_SECTIONS:
                    raise PluginError(
                        f"plugin {label} declares config section {name!r}, which the core owns"
                    )
                if not (isinstance(model, type) and issubclass(model, BaseModel)):
                    raise PluginError(
                        f"plugin {label} declares config section {name!r} with "
                        f"{model!r}, not a pydantic model"
                    )
                if name in sections:
                    raise PluginError(
                        f"config section {name!r} is declared twice: by plugin "
                        f"{self._infos[sections[name].plugin].label} and by plugin {label}"
                    )
                sections[name] = Section(name, model, plugin)

            self._call(impl, "moe_config_sections", register=register)
        return sections

    def prepare_config(self, data: dict[str, Any], base_dir: Any, source: str) -> None:
        """Let each plugin rewrite the raw configuration (its own sections) before validation."""
        self._each("moe_prepare_config", data=data, base_dir=base_dir, source=source)

    def default_config(self) -> dict[str, Any]:
        """The merged default-configuration fragments of every plugin (registration order)."""
        merged: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for plugin, fragment in self._each("moe_default_config"):
            if fragment is not None:
                _merge(merged, fragment, owners, plugin, self._infos, "")
        return merged

    def setup_app(
        self,
        app: Any,
        moe: Any,
        add_middleware: AddMiddleware,
        add_request_observer: AddRequestObserver,
    ) -> None:
        self._each(
            "moe_setup_app",
            app=app,
            moe=moe,
            add_middleware=add_middleware,
            add_request_observer=add_request_observer,
        )

    def register_commands(self, commands: Any) -> None:
        self._each("moe_register_commands", commands=commands)

    def _each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Every plugin's implementation of ``hook``, in registration order: (plugin, result)."""
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        return [(impl.plugin_name, self._call(impl, hook, **kwargs)) for impl in impls]

    def _call(self, impl: Any, hook: str, **kwargs: Any) -> Any:
        """One plugin's implementation of ``hook``, given the arguments it takes (as pluggy
        does: an implementation may leave out any): a failure names the plugin."""
        try:
            return impl.function(**{name: kwargs[name] for name in impl.argnames})
        except (PluginError, ConfigError):
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {self._infos[impl.plugin_name].label} failed in {hook}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _collect_kinds(self) -> KindRegistry:
        registry = KindRegistry()
        for info in self._infos.values():
            info.kinds = {}
        for part in PARTS:
            caller = getattr(self.pm.hook, _HOOK_OF_PART[part])
            # Each implementation is called on its own so every kind is attributed to its plugin.
            for impl in caller.get_hookimpls():
                register = _registrar(part, impl.plugin_name, registry, self._infos)
                self._call(impl, _HOOK_OF_PART[part], register=register)
        return registry


def _merge(
    into: dict[str, Any],
    fragment: dict[str, Any],
    owners: dict[str, str],
    plugin: str,
    infos: dict[str, PluginInfo],
    path: str,
) -> None:
    """Merge a default-configuration fragment: mappings key by key, a clash is an error."""
    for key, value in fragment.items():
        where = f"{path}{key}"
        if isinstance(value, dict) and isinstance(into.get(key, {}), dict):
            _merge(into.setdefault(key, {}), value, owners, plugin, infos, f"{where}.")
        elif key in into and into[key] != value:
            raise PluginError(
                f"default configuration: {where} is set by plugin {infos[owners[where]].label} "
                f"and, differently, by plugin {infos[plugin].label}; disable one of them"
            )
        else:
            into[key] = value
            owners[where] = plugin


def _registrar(
    part: Part, plugin: str, registry: KindRegistry, infos: dict[str, PluginInfo]
) -> Register:
    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] = Options,
        summary: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {infos[plugin].label} registered a {part} with no name")
        doc = summary if summary is not None else (factory.__doc__ or "").strip()
        kind = Kind(part, name, factory, options, plugin, doc.splitlines()[0] if doc else "")
        registry.add(kind, infos)
        infos[plugin].kinds.setdefault(part, []).append(name)

    return register


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return [caller.name for caller in pm.get_hookcallers(plugin) or []]


def create_plugin_manager(
    *,
    disable: Iterable[str] = (),
    require: Iterable[str] = (),
    entrypoints: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
) -> MoEPluginManager:
    """A fresh manager with the default plugins, the installed entry points and any extra ones.

    :param disable: names of default plugins or entry points not to load.
    :param require: plugin names that must be present, or startup fails.
    :param entrypoints: load installed plugins (tests may turn this off).
    :param plugins: extra ``(name, plugin)`` pairs, registered like installed ones.
    """
    manager = MoEPluginManager()
    disabled = set(disable)
    version = distribution_version("moe-core")
    for name, module in DEFAULT_PLUGINS:
        if name not in disabled:
            plugin = importlib.import_module(module)
            manager.register(plugin, name, distribution="moe-core", version=version)
    if entrypoints:
        manager.load_entrypoints(disable)
    for name, plugin in plugins:
        manager.register(plugin, name)
    manager.require(require)
    return manager


def distribution_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
