"""A faithful local fake of the Pollinations API, for tests, demos and benchmarks.

Two aiohttp applications on loopback, one per Pollinations host, speaking its wire format:

- text host: ``GET /models`` (the listing), ``POST /openai`` (also ``/openai/chat/completions``
  and ``/v1/chat/completions``, so the ``openai`` SDK can be pointed at it): OpenAI's
  ``chat.completion``, or SSE ``chat.completion.chunk`` frames ending in ``data: [DONE]``; image
  parts are seen; ``modalities: ["text", "audio"]`` with ``audio: {voice, format}`` on an audio
  model puts base64 MP3 in ``choices[0].message.audio``; ``GET /{prompt}`` answers ``text/plain``
  (``audio/mpeg`` for ``model=openai-audio&voice=...``).
- image host: ``GET /models`` (names), ``GET /prompt/{prompt}?model&width&height&seed&nologo&
  enhance&image`` answers a real JPEG of the asked size; the JPEG's comment says what was asked.

Per model (``behaviour["flux"]``) or for all (``default``) it can be slow, fail with a status,
rate-limit with ``Retry-After`` a number of times, or fail only the first N calls. Every request
is kept in ``requests`` so a test can check what was sent (token, referrer, parameters).

Run it alone with ``python -m moe_pollinations.testing --port 9100`` (the image host listens on
the next port).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from moe_pollinations import media


@dataclass
class ModelBehaviour:
    """How the fake answers calls to one model (or to every model, as ``default``)."""

    reply: str | None = None  # default: "<model> says: <last user text>"
    delay_s: float = 0.0  # before answering (a slow model)
    chunk_delay_s: float = 0.0
    status: int | None = None  # answer with this error status...
    fail_times: int | None = None  # ...only this many times (None: always)
    retry_after: str | None = None  # sent with the error status


@dataclass
class Recorded:
    host: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakePollinations:
    """The fake; start it with :meth:`start` (tests) or :func:`main` (a shell)."""

    text_models: list[dict[str, Any]] = field(default_factory=list)
    image_models: list[str] = field(default_factory=list)
    default: ModelBehaviour = field(default_factory=ModelBehaviour)
    behaviour: dict[str, ModelBehaviour] = field(default_factory=dict)
    require_token: str | None = None  # answer 401 unless "Authorization: Bearer <token>"
    requests: list[Recorded] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    listing_status: int | None = None  # make /models fail on both hosts
    text_url: str = ""
    image_url: str = ""

    def __post_init__(self) -> None:
        if not self.text_models and not self.image_models:
            listing = snapshot_raw()
            self.text_models, self.image_models = listing["text"], listing["image"]
        self._servers: list[TestServer] = []

    # -- lifecycle ------------------------------------------------------------------------

    def text_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/models", self.text_listing)
        for path in ("/openai", "/openai/chat/completions", "/v1/chat/completions"):
            app.router.add_post(path, self.chat)
        app.router.add_get("/{prompt:.+}", self.text_get)
        return app

    def image_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/models", self.image_listing)
        app.router.add_get("/prompt/{prompt:.+}", self.image)
        return app

    async def start(self, host: str = "127.0.0.1") -> FakePollinations:
        for app in (self.text_app(), self.image_app()):
            server = TestServer(app, host=host)
            await server.start_server()
            self._servers.append(server)
        self.text_url = str(self._servers[0].make_url("")).rstrip("/")
        self.image_url = str(self._servers[1].make_url("")).rstrip("/")
        return self

    async def close(self) -> None:
        for server in self._servers:
            await server.close()
        self._servers.clear()

    def options(self) -> dict[str, str]:
        """The connection options that point an expert or gate at this fake."""
        return {"text_base_url": self.text_url, "image_base_url": self.image_url}

    def of(self, model: str) -> ModelBehaviour:
        return self.behaviour.get(model, self.default)

    def calls(self, model: str) -> list[Recorded]:
        """The generation requests that named ``model``."""
        return [
            r
            for r in self.requests
            if (r.body or {}).get("model", r.query.get("model")) == model
            and not r.path.endswith("/models")
        ]

    # -- shared behaviour ---------------------------------------------------------------------

    async def _record(self, request: web.Request, host: str) -> Recorded:
        body = None
        if request.method == "POST":
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                body = None
        recorded = Recorded(
            host=host,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
        )
        self.requests.append(recorded)
        return recorded

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.require_token is None:
            return None
        header = request.headers.get("Authorization")
        token = request.query.get("token")
        if header == f"Bearer {self.require_token}" or token == self.require_token:
            return None
        return _error(401, "Authentication required: a valid token is needed for this tier")

    async def _obstacle(self, request: web.Request, model: str) -> web.Response | None:
        """What stands between a request and its answer: a missing token, then whatever the
        model was told to do (a delay, an error status, a 429)."""
        refused = self._refused(request)  # a Response is a mapping: test it against None
        return refused if refused is not None else await self._misbehave(model)

    async def _misbehave(self, model: str) -> web.Response | None:
        behaviour = self.of(model)
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.status is None:
            return None
        seen = self.failures.get(model, 0)
        if behaviour.fail_times is not None and seen >= behaviour.fail_times:
            return None
        self.failures[model] = seen + 1
        headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else None
        message = "Too Many Requests" if behaviour.status == 429 else "Internal Server Error"
        return _error(behaviour.status, f"{message} (fake, model {model})", headers)

    def _reply(self, model: str, text: str) -> str:
        behaviour = self.of(model)
        return behaviour.reply if behaviour.reply is not None else f"{model} says: {text}"

    # -- listings ----------------------------------------------------------------------------

    async def text_listing(self, request: web.Request) -> web.Response:
        await self._record(request, "text")
        if self.listing_status:
            return _error(self.listing_status, "listing unavailable (fake)")
        return web.json_response(self.text_models)

    async def image_listing(self, request: web.Request) -> web.Response:
        await self._record(request, "image")
        if self.listing_status:
            return _error(self.listing_status, "listing unavailable (fake)")
        return web.json_response(self.image_models)

    # -- text ------------------------------------------------------------------------------

    def _text_model(self, name: str) -> dict[str, Any] | None:
        for model in self.text_models:
            aliases = model.get("aliases") or []
            if model["name"] == name or name == aliases or name in aliases:
                return model
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request, "text")
        body = recorded.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "Invalid request: messages is required")
        model_name = str(body.get("model") or "openai")
        model = self._text_model(model_name)
        if model is None:
            return _error(404, f"Model not found: {model_name}")
        obstacle = await self._obstacle(request, model_name)
        if obstacle is not None:
            return obstacle
        last, images = _last_user(body["messages"])
        text = self._reply(model_name, last)
        if images:
            text += f" (saw {images} image{'s' if images > 1 else ''})"
        wants_audio = "audio" in (body.get("modalities") or []) or "audio" in body
        audio = None
        if wants_audio:
            if "audio" not in model.get("output_modalities", []):
                return _error(400, f"Model {model_name} cannot produce audio")
            voice = (body.get("audio") or {}).get("voice") or body.get("voice") or "alloy"
            if voice not in model.get("voices", []):
                return _error(400, f"Unknown voice {voice!r} for {model_name}")
            audio = {
                "id": "audio_fake",
                "data": base64.b64encode(media.mp3(1 + len(text) / 60)).decode(),
                "expires_at": int(time.time()) + 3600,
                "transcript": text,
            }
        words = text.split(" ")
        limit = body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        created = int(time.time())
        served = model.get("aliases") or model_name
        served = served[0] if isinstance(served, list) else served
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": " ".join(words)}
            if audio is not None:
                message["content"] = None
                message["audio"] = audio
            return web.json_response(
                {
                    "id": "chatcmpl-pollinations-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": served,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": "chatcmpl-pollinations-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": served,
                "choices": choices,
                **extra,
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        def delta(content: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return frame([{"index": 0, "delta": content, "finish_reason": finish_reason}])

        await response.write(delta({"role": "assistant", "content": ""}))
        behaviour = self.of(model_name)
        for index, word in enumerate(words):
            if index and behaviour.chunk_delay_s:
                await asyncio.sleep(behaviour.chunk_delay_s)
            await response.write(delta({"content": word if index == 0 else " " + word}))
        await response.write(delta({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(frame([], usage=usage))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def text_get(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "text")
        prompt = request.match_info["prompt"]
        model_name = request.query.get("model", "openai")
        model = self._text_model(model_name)
        if model is None:
            return _error(404, f"Model not found: {model_name}")
        obstacle = await self._obstacle(request, model_name)
        if obstacle is not None:
            return obstacle
        text = self._reply(model_name, prompt)
        if "audio" in model.get("output_modalities", []) and "voice" in request.query:
            return web.Response(body=media.mp3(1 + len(text) / 60), content_type="audio/mpeg")
        return web.Response(text=text, content_type="text/plain")

    # -- images ----------------------------------------------------------------------------

    async def image(self, request: web.Request) -> web.Response:
        recorded = await self._record(request, "image")
        prompt = request.match_info["prompt"]
        query = recorded.query
        model = query.get("model", "flux")
        if model not in self.image_models:
            return _error(400, f"Invalid model {model!r}; available: {self.image_models}")
        obstacle = await self._obstacle(request, model)
        if obstacle is not None:
            return obstacle
        try:
            width = int(query.get("width", 1024))
            height = int(query.get("height", 1024))
        except ValueError:
            return _error(400, "width and height must be integers")
        if not (16 <= width <= 2048 and 16 <= height <= 2048):
            return _error(400, "width and height must be between 16 and 2048")
        comment = json.dumps(
            {
                "prompt": prompt,
                "model": model,
                "seed": query.get("seed"),
                "image": query.get("image"),
                "nologo": query.get("nologo"),
                "enhance": query.get("enhance"),
            }
        )
        return web.Response(body=media.jpeg(width, height, comment), content_type="image/jpeg")


def snapshot_raw() -> dict[str, Any]:
    """The bundled listing as the two hosts serve it."""
    from importlib import resources

    from moe_pollinations.registry import SNAPSHOT

    raw = json.loads(resources.files("moe_pollinations").joinpath(SNAPSHOT).read_text("utf-8"))
    return {"text": raw["text"], "image": raw["image"]}


def _last_user(messages: list[dict[str, Any]]) -> tuple[str, int]:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content, 0
        texts = [p.get("text", "") for p in content or [] if p.get("type") == "text"]
        images = sum(1 for p in content or [] if p.get("type") == "image_url")
        return "\n".join(texts), images
    return "", 0


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    # Pollinations' error bodies: {"error": <short>, "message": <detail>, "status": <code>}.
    short = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}
    return web.json_response(
        {"error": short.get(status, "Internal Server Error"), "message": message, "status": status},
        status=status,
        headers=headers,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Pollinations API on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="text host; image host is +1")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    fake = FakePollinations(default=ModelBehaviour(delay_s=args.delay))

    async def serve() -> None:
        runners = []
        for app, port in ((fake.text_app(), args.port), (fake.image_app(), args.port + 1)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, args.host, port).start()
            runners.append(runner)
        print(
            f"fake Pollinations: text http://{args.host}:{args.port} "
            f"image http://{args.host}:{args.port + 1}",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            for runner in runners:
                await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
