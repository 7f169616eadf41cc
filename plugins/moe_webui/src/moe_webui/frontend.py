"""The ``webui`` frontend: the chat page at ``/`` and ``/ui/``, its files under ``/ui/``.

The page talks to the gateway through the same public routes any client uses (``/v1/models``,
``/v1/chat/completions``, ``/v1/feedback``, ``/-/stats``...), so it needs no route of its own
beyond its files and shows exactly what a client would get. It is mounted by default; a
configuration turns it off with ``server.frontends.webui.enabled: false``.

When the gateway asks for API keys, the page and its files still load without one (they hold no
data): the page then asks the user for a key and sends it with every call it makes.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from aiohttp import web
from pydantic import Field

from moe_core import Frontend, NotFound, Options
from moe_core.appkeys import PUBLIC_PATHS_KEY
from moe_webui.assets import Asset, load_assets

log = structlog.get_logger(__name__)

PREFIX = "/ui/"
INDEX = "index.html"


class WebUIOptions(Options):
    at_root: bool = Field(
        True, description="Serve the chat page at / as well as /ui/ (false: /ui/ only)"
    )


class WebUIFrontend(Frontend):
    """The chat page and routing dashboard, at ``/`` and ``/ui/``."""

    options: WebUIOptions

    def setup(self, app: web.Application) -> None:
        assets = load_assets()
        index = assets[INDEX]

        async def page(request: web.Request) -> web.StreamResponse:
            return index.response(request)

        async def asset(request: web.Request) -> web.StreamResponse:
            found = assets.get(request.match_info["path"])
            if found is None:
                raise NotFound(f"Unknown request URL: {request.method} {request.path}.")
            return found.response(request)

        async def to_folder(request: web.Request) -> web.StreamResponse:
            raise web.HTTPPermanentRedirect(PREFIX)

        pages = [PREFIX, *(["/"] if self.options.at_root else [])]
        for path in pages:
            app.router.add_get(path, page)
        app.router.add_get(PREFIX.rstrip("/"), to_folder)
        app.router.add_get(PREFIX + "{path:.+}", asset)
        _make_public(app, [*pages, PREFIX.rstrip("/"), *_urls(assets)])
        log.debug("webui.mounted", pages=pages, files=len(assets))


def _urls(assets: dict[str, Asset]) -> list[str]:
    """The URL of every file the page may load."""
    return [PREFIX + path for path in assets]


def _make_public(app: web.Application, paths: Iterable[str]) -> None:
    """Let these exact paths answer without an API key: the page must load to ask for one."""
    app[PUBLIC_PATHS_KEY].update(paths)
