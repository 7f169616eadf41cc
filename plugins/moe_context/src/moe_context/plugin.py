"""The ``context`` plugin's hooks: preparers that give experts what the messages only point
at (images, links, the web, files), the offline ``image-facts`` expert, and the files API."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from moe_context.callers import caller_middleware
from moe_context.facts import ImageFactsExpert, ImageFactsOptions
from moe_context.fileparts import ReadFilesOptions, ReadFilesPreparer
from moe_context.fileroutes import FilesFrontend
from moe_context.filestore import SECTION, FilesConfig
from moe_context.images import DescribeImagesOptions, DescribeImagesPreparer
from moe_context.search import WebSearchOptions, WebSearchPreparer
from moe_context.urls import ReadUrlsOptions, ReadUrlsPreparer
from moe_core import AddMiddleware, MoE, Register, RegisterSection, hookimpl


@hookimpl
def moe_register_preparers(register: Register) -> None:
    register("read-files", ReadFilesPreparer, options=ReadFilesOptions)
    register("describe-images", DescribeImagesPreparer, options=DescribeImagesOptions)
    register("read-urls", ReadUrlsPreparer, options=ReadUrlsOptions)
    register("web-search", WebSearchPreparer, options=WebSearchOptions)


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("image-facts", ImageFactsExpert, options=ImageFactsOptions)


@hookimpl
def moe_default_config() -> dict[str, Any]:
    """Images for the default text-only experts, described offline: size, colours, OCR text."""
    return {
        "experts": {"image-facts": {"kind": "image-facts"}},
        "preparers": {"images": {"kind": "describe-images", "describer": "image-facts"}},
    }


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("files", FilesFrontend)


@hookimpl
def moe_config_sections(register: RegisterSection) -> None:
    register(SECTION, FilesConfig)


@hookimpl
def moe_setup_app(app: web.Application, moe: MoE, add_middleware: AddMiddleware) -> None:
    # Who is calling, for the files a chat message references (the routes read it themselves);
    # without keys every caller is the same one, and nothing needs to be set.
    if moe.config.server.api_keys_env:
        add_middleware(caller_middleware, stage="routes")
