"""The ``moe`` command: serve the gateway, inspect plugins, try routing and chat from a shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from moe_core.config import CONFIG_ENV
from moe_core.errors import ConfigError, MoEError, PluginError
from moe_core.logging import configure_logging

if TYPE_CHECKING:
    from moe_core.plugins import MoEPluginManager


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        help=f"YAML configuration file (default: ${CONFIG_ENV}, else the embedded default)",
    )


def build_parser(manager: MoEPluginManager | None = None) -> argparse.ArgumentParser:
    """The ``moe`` command's parser, with the subcommands the plugins of ``manager`` add
    (:func:`moe_core.hookspecs.moe_register_commands`)."""
    parser = argparse.ArgumentParser(
        prog="moe", description="A plugin-based mixture-of-experts gateway."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP gateway")
    _add_config(serve)
    serve.add_argument("--host", help="address to bind (default: server.host)")
    serve.add_argument("--port", type=int, help="port to bind (default: server.port)")
    serve.add_argument("--log-format", choices=["auto", "json", "console"])
    serve.add_argument(
        "--workers",
        help="processes serving one port: a number or 'auto' (default: server.workers, 1)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    plugins = commands.add_parser("plugins", help="list installed plugins and what they register")
    _add_config(plugins)
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    route = commands.add_parser("route", help="show the routing decision for a prompt")
    _add_config(route)
    route.add_argument("prompt")
    route.add_argument("-m", "--model", default="auto", help="model or expert (default: auto)")
    route.add_argument("--json", action="store_true", help="machine-readable output")

    chat = commands.add_parser("chat", help="answer one prompt through the gateway, in-process")
    _add_config(chat)
    chat.add_argument("prompt")
    chat.add_argument("-m", "--model", default="auto", help="model or expert (default: auto)")
    chat.add_argument("-s", "--system", help="system prompt")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--no-stream", action="store_true", help="print the answer when complete")
    chat.add_argument("--json", action="store_true", help="print the full response as JSON")
    gate = commands.add_parser("gate", help="work with the gate")
    gate_commands = gate.add_subparsers(dest="gate_command", required=True, metavar="ACTION")
    train = gate_commands.add_parser("train", help="train a learned gate and write its artefact")
    _add_config(train)
    train.add_argument(
        "--kind",
        help="train this gate kind with its default options (default: the configured gate)",
    )
    train.add_argument("--data", help="training data, for gates that take a data file")
    train.add_argument(
        "-o",
        "--output",
        help="output path (default: $MOE_DATA_DIR/gates/KIND.npz; the packaged one only if named)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="print the metrics as JSON")
    if manager is not None:
        manager.register_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from moe_core.plugins import create_plugin_manager

    try:
        parser = build_parser(create_plugin_manager())
    except PluginError as exc:
        print(f"moe: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        handler = getattr(args, "handler", None) or _COMMANDS[args.command]
        return handler(args)
    except (ConfigError, PluginError) as exc:
        print(f"moe: error: {exc}", file=sys.stderr)
        return 2
    except MoEError as exc:
        print(f"moe: {exc.type}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _build(args: argparse.Namespace) -> Any:
    from moe_core.orchestrator import MoE

    return MoE.from_config(args.config)


def _quiet_logging(args: argparse.Namespace) -> None:
    """Warnings only (``-v``: everything), and no progress bars of model loading."""
    configure_logging("debug" if args.verbose else "warning", "console")
    if not args.verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def cmd_serve(args: argparse.Namespace) -> int:
    from moe_core.config import load_config
    from moe_core.server import serve
    from moe_core.workers import supervise, worker_count

    config = load_config(args.config)
    configure_logging(
        "debug" if args.verbose else config.server.log_level,
        args.log_format or config.server.log_format,
    )
    workers = worker_count(args.workers or config.server.workers)
    if workers > 1 and not args.reuse_port:
        argv = ["-v"] if args.verbose else []
        argv += ["serve", "--workers", "1"]
        for flag, value in (
            ("--config", args.config),
            ("--host", args.host),
            ("--port", args.port),
            ("--log-format", args.log_format),
        ):
            if value is not None:
                argv += [flag, str(value)]
        return supervise(argv, workers, config.server.shutdown_timeout_s)
    moe = _build(args)
    try:
        serve(moe, host=args.host, port=args.port, reuse_port=args.reuse_port)
    except OSError as exc:
        host = args.host or config.server.host
        port = args.port if args.port is not None else config.server.port
        print(f"moe: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from moe_core.config import load_config
    from moe_core.plugins import create_plugin_manager

    _quiet_logging(args)
    manager = load_config(args.config).plugin_manager if args.config else create_plugin_manager()
    assert manager is not None
    kinds = manager.kinds
    if args.json:
        print(json.dumps([info.as_dict() for info in manager.infos.values()], indent=2))
        return 0
    for info in manager.infos.values():
        print(f"{info.name}  ({info.distribution or 'unknown'} {info.version or ''})".rstrip())
        for part, names in info.kinds.items():
            for name in names:
                summary = kinds.get(part, name).summary  # type: ignore[arg-type]
                print(f"    {part:<9} {name:<22} {summary}")
        for section in info.sections:
            print(f"    {'section':<9} {section}")
        others = [hook for hook in info.hooks if hook in EXTRA_HOOKS]
        if others:
            print(f"    {'hooks':<9} {', '.join(others)}")
        if not (info.kinds or info.sections or others):
            print("    registers nothing")
    return 0


EXTRA_HOOKS = ("moe_prepare_config", "moe_default_config", "moe_setup_app", "moe_register_commands")


def cmd_route(args: argparse.Namespace) -> int:
    _quiet_logging(args)
    moe = _build(args)

    async def decide() -> Any:
        await moe.start(experts=False)
        try:
            return await moe.route(_request(args))
        finally:
            await moe.aclose()

    decision = asyncio.run(decide())
    if args.json:
        print(decision.model_dump_json(indent=2))
        return 0
    print(f"experts:    {', '.join(decision.experts)}")
    print(f"gate:       {decision.gate}")
    print(f"strategy:   {decision.strategy or moe.default_combiner.name}")
    if decision.confidence is not None:
        print(f"confidence: {decision.confidence:.2f}")
    if decision.runner_up:
        print(f"runner-up:  {decision.runner_up}")
    if decision.fallbacks:
        print(f"fallbacks:  {', '.join(decision.fallbacks)}")
    print(f"rationale:  {decision.rationale}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from moe_core.http import json_bytes

    _quiet_logging(args)
    moe = _build(args)
    request = _request(args)

    async def answer() -> None:
        # Loading models takes seconds: one status line on a terminal, gone once they are ready.
        status = sys.stderr.isatty() and not args.verbose
        if status:
            sys.stderr.write("loading models...")
            sys.stderr.flush()
        await moe.start()
        if status:
            sys.stderr.write("\r\033[K")
        async with moe:
            if args.no_stream or args.json:
                response = await moe.complete(request)
                if args.json:  # what the HTTP API answers: OpenAI's chat.completion
                    print(json_bytes(response.chat_completion(), indent=True).decode())
                else:
                    print(response.result.content)
                return
            async with await moe.open_stream(request) as stream:
                async for delta in stream:
                    if delta.content:
                        sys.stdout.write(delta.content)
                        sys.stdout.flush()
            sys.stdout.write("\n")
            if stream.metadata is not None:
                used = ", ".join(stream.metadata.experts_used)
                print(f"[{used} · {stream.metadata.total_latency_ms:.0f} ms]", file=sys.stderr)

    asyncio.run(answer())
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from moe_core.config import InstanceConfig, load_config
    from moe_core.orchestrator import build_part
    from moe_core.parts import TrainableGate

    _quiet_logging(args)
    config = load_config(args.config)
    manager = config.plugin_manager
    assert manager is not None  # load_config records the manager it validated with
    kind = manager.kinds.get("gate", args.kind or config.gate.kind)
    raw = {} if args.kind else config.gate.options()
    if args.data:
        if "data" not in kind.options.model_fields:
            raise ConfigError(f"gate kind {kind.name!r} takes no --data")
        raw["data"] = args.data
    gate = build_part(
        manager, config, "gate", InstanceConfig(kind=kind.name, **raw), kind.name, "gate"
    )
    if not isinstance(gate, TrainableGate):
        raise ConfigError(f"gate kind {kind.name!r} does not learn from data; nothing to train")
    output = Path(args.output) if args.output else None
    result = gate.train(output=output, progress=not args.no_progress)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "report"}, indent=2))
    else:
        print(result.get("report") or f"trained {kind.name}: {result}")
    return 0


def _request(args: argparse.Namespace) -> dict[str, Any]:
    messages = [{"role": "system", "content": args.system}] if getattr(args, "system", None) else []
    messages.append({"role": "user", "content": args.prompt})
    request: dict[str, Any] = {"model": args.model, "messages": messages}
    if getattr(args, "max_tokens", None) is not None:
        request["max_tokens"] = args.max_tokens
    if getattr(args, "temperature", None) is not None:
        request["temperature"] = args.temperature
    return request


_COMMANDS = {
    "serve": cmd_serve,
    "plugins": cmd_plugins,
    "route": cmd_route,
    "chat": cmd_chat,
    "gate": cmd_gate,
}


if __name__ == "__main__":
    sys.exit(main())
