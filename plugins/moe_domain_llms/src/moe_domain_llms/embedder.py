"""The ``sentence-embedding`` expert: all-MiniLM-L6-v2 sentence vectors as an expert's answer.

Asked with ``moe.task_type: embed`` (or no task), it answers with the embedding of the last user
message as a JSON array of floats (unit length, 384 numbers), the convention every embedding
expert of the gateway follows. That makes meaning comparable wherever an expert can be called:
a ``parallel-vote`` with ``embedder:`` groups free-text answers that say the same thing in
different words. Concurrent calls share forward passes.
"""

from __future__ import annotations

import orjson
from pydantic import Field

from moe_core import ChatRequest, Expert, ExpertCard, ExpertResult, InvalidRequest, Options, Usage
from moe_domain_llms.embeddings import DEFAULT_ENCODER, MAX_TOKENS, RUNTIME_HELP, Encoder, Runtime


class SentenceEmbeddingOptions(Options):
    encoder: str = Field(DEFAULT_ENCODER, description="Sentence-embedding model folder")
    runtime: Runtime = Field("onnx", description=RUNTIME_HELP)


class SentenceEmbeddingExpert(Expert):
    """Answers ``embed`` with a sentence vector."""

    options: SentenceEmbeddingOptions

    def __init__(self, name: str, options: SentenceEmbeddingOptions) -> None:
        super().__init__(name, options)
        self.encoder = Encoder(
            options.encoder, where=f"experts.{name}.encoder", runtime=options.runtime
        )

    def card(self) -> ExpertCard:
        return ExpertCard(
            description=f"sentence embeddings from {self.encoder.identity}",
            capabilities=["embed"],
            modalities_out=["embedding"],
            context_window=MAX_TOKENS,
        )

    async def start(self) -> None:
        import asyncio

        await asyncio.to_thread(self.encoder.load)

    async def close(self) -> None:
        await self.encoder.close()

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """Unit vectors and the tokens they took, for ``POST /v1/embeddings``; the texts of
        concurrent requests share forward passes."""
        return await self.encoder.embed(texts, dimensions=dimensions, where=f"expert {self.name!r}")

    async def generate(self, request: ChatRequest) -> ExpertResult:
        task = request.hints.task_type
        if task not in (None, "embed"):
            raise InvalidRequest(
                f"expert {self.name!r} only embeds text; task {task!r} is not one it does",
                param="moe.task_type",
            )
        text = request.last_user_text()
        vector = await self.encoder.encode_one(text)
        tokens = min(MAX_TOKENS, len(self.encoder.tokenizer.tokenize(text)) + 2)
        return ExpertResult(
            content=orjson.dumps(vector.tolist()).decode(),
            usage=Usage.of(tokens, 0),
            model=self.encoder.identity,
        )
