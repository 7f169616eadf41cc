"""``moe pollinations sync``: refresh the cached model listing now, or print it as config.

Added to the ``moe`` command through the ``moe_register_commands`` hook. Connection settings come
from the flags, else from the first ``pollinations`` expert of the configuration, else the
defaults (the public Pollinations hosts).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import yaml

from moe_core.errors import ConfigError
from moe_core.logging import configure_logging
from moe_pollinations.client import PollinationsClient
from moe_pollinations.expert import PollinationsOptions, refresh_listing
from moe_pollinations.registry import cache_path, experts_config, load_listing


def add_commands(commands: Any) -> None:
    parser = commands.add_parser("pollinations", help="work with the Pollinations model listing")
    actions = parser.add_subparsers(dest="pollinations_command", required=True, metavar="ACTION")
    sync = actions.add_parser("sync", help="fetch the model listing into the cache")
    sync.add_argument("-c", "--config", help="take connection settings from this config")
    sync.add_argument("--text-base-url", help="text API root")
    sync.add_argument("--image-base-url", help="image API root")
    sync.add_argument(
        "--cache-dir",
        help="where the listing is cached (default: pollinations/ in $MOE_CACHE_DIR, else in "
        "~/.cache/moe)",
    )
    sync.add_argument(
        "--print-config",
        action="store_true",
        help="print an experts: section with one expert per listed model",
    )
    sync.add_argument("--offline", action="store_true", help="do not fetch; use the cache")
    sync.set_defaults(handler=cmd_sync)


def _options(args: argparse.Namespace) -> PollinationsOptions:
    raw: dict[str, Any] = {}
    if args.config:
        from moe_core.config import load_config

        config = load_config(args.config)
        for expert in config.experts.values():
            if expert.kind == "pollinations":
                raw = {k: v for k, v in expert.options().items() if k != "model"}
                break
    for flag in ("text_base_url", "image_base_url", "cache_dir"):
        if getattr(args, flag):
            raw[flag] = getattr(args, flag)
    try:
        return PollinationsOptions.model_validate(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid Pollinations settings: {exc}") from None


def cmd_sync(args: argparse.Namespace) -> int:
    configure_logging("debug" if args.verbose else "warning", "console")
    options = _options(args)
    path = cache_path(options.cache_dir)

    async def fetch() -> bool:
        client = PollinationsClient(options, who="moe pollinations sync")
        await client.start()
        try:
            return await refresh_listing(client, path)
        finally:
            await client.close()

    fetched = False if args.offline else asyncio.run(fetch())
    listing = load_listing(path)
    if args.print_config:
        connection = {
            key: value
            for key, value in options.model_dump(exclude_defaults=True).items()
            if key in ("text_base_url", "image_base_url", "cache_dir")
        }
        print(yaml.safe_dump({"experts": experts_config(listing, **connection)}, sort_keys=False))
    summary = (
        f"{len(listing.models)} models ({len(listing.text)} text, {len(listing.image)} image) "
        f"from {listing.source}"
    )
    if args.offline:
        print(f"offline: {summary}", file=sys.stderr)
        return 0
    if not fetched:
        print(
            f"moe: error: cannot fetch the Pollinations model listing from "
            f"{options.text_base_url} and {options.image_base_url}; using {summary}",
            file=sys.stderr,
        )
        return 1
    print(f"synced {summary}", file=sys.stderr if args.print_config else sys.stdout)
    return 0
