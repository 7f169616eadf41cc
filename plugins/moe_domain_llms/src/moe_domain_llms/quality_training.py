"""Training the quality-vs-cost predictor from a file of recorded outcomes.

The file is CSV (with a header) or JSONL, one request per row: ``prompt`` and either
``weak_ok``/``strong_ok`` (true/false, 1/0, yes/no: did each expert answer well) or
``weak_score``/``strong_score`` (graded quality, higher is better; the weak answer counts as
as good when it is no more than ``margin`` below). The report gives held-out figures from
cross-validation (every prompt scored by a model that never saw it): APGR, CPT(50%), and the
threshold calibrated to the target strong share with the share it gives on held-out prompts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moe_core import ConfigError
from moe_domain_llms import artefacts, quality
from moe_domain_llms.routing_metrics import apgr, cpt

KIND = "quality-cost"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass
class Outcomes:
    prompts: list[str]
    weak: np.ndarray
    strong: np.ndarray
    graded: bool
    sha256: str
    path: Path


def _flag(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    raise ConfigError(f"{where}: expected true/false, got {value!r}")


def _score(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return number


def load_outcomes(path: Path) -> Outcomes:
    """Read a CSV or JSONL outcome file, refusing bad rows with the line that is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read outcome data {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for line, content in enumerate(text.splitlines(), start=1):
            if not content.strip():
                continue
            try:
                row = json.loads(content)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{line}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path}:{line}: expected a JSON object")
            rows.append((line, row))
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = list(enumerate(reader, start=2))
    expected = "prompt and weak_ok,strong_ok (or weak_score,strong_score)"
    if not rows:
        raise ConfigError(f"{path}: no outcomes; expected rows with {expected}")
    keys = set(rows[0][1])
    graded = {"weak_score", "strong_score"} <= keys
    if "prompt" not in keys or not (graded or {"weak_ok", "strong_ok"} <= keys):
        raise ConfigError(f"{path}: expected columns {expected}; found {', '.join(sorted(keys))}")
    read = _score if graded else _flag
    weak_key, strong_key = ("weak_score", "strong_score") if graded else ("weak_ok", "strong_ok")
    prompts, weak, strong = [], [], []
    for line, row in rows:
        where = f"{path}:{line}"
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"{where}: empty prompt")
        prompts.append(prompt)
        weak.append(read(row.get(weak_key), f"{where} {weak_key}"))
        strong.append(read(row.get(strong_key), f"{where} {strong_key}"))
    return Outcomes(
        prompts, np.array(weak), np.array(strong), graded, hashlib.sha256(raw).hexdigest(), path
    )


def _progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def prompt_vectors(
    prompts: list[str],
    blocks: tuple[str, ...],
    encoder: Any = None,
    lm: Any = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Every block's vectors for every prompt, in batches, with a progress bar."""
    if encoder is not None:
        encoder.load()
    if lm is not None:
        lm.load()
    batches = range(0, len(prompts), 64)
    parts = [
        quality.prompt_vectors(prompts[start : start + 64], blocks, encoder, lm)
        for start in _progress(batches, progress, desc="embedding prompts", unit="batch")
    ]
    return {block: np.concatenate([part[block] for part in parts]) for block in blocks}


def train_quality(
    prompts: list[str],
    weak: np.ndarray,
    strong: np.ndarray,
    output: Path,
    *,
    encoder: Any = None,
    lm: Any = None,
    embeddings: dict[str, np.ndarray] | None = None,
    target_strong_share: float = 0.5,
    encoder_identity: str | None = None,
    lm_identity: str | None = None,
    lm_layer: int | None = None,
    margin: float = 0.0,
    progress: bool = True,
    **meta: Any,
) -> dict[str, Any]:
    """Fit the predictor, write the artefact, and return held-out metrics and a printable
    report.

    The blocks read (see :data:`moe_domain_llms.quality.BLOCKS`) are the stem and options
    embeddings when an ``encoder`` is given and the LM states when an ``lm``
    (:class:`~moe_domain_llms.lm_states.LMStates`) is; or the keys of precomputed
    ``embeddings``, made by the models named ``encoder_identity`` and ``lm_identity``
    (``lm_layer``)."""
    if embeddings is None:
        blocks = (quality.STEM, quality.OPTIONS) if encoder is not None else ()
        blocks += (quality.LM,) if lm is not None else ()
    else:
        blocks = tuple(embeddings)
    if encoder is not None:
        encoder_identity = encoder_identity or encoder.identity
    if lm is not None:
        lm_identity, lm_layer = lm_identity or lm.identity, lm_layer or lm.layer
    if any(block in quality.SENTENCE_BLOCKS for block in blocks) and encoder_identity is None:
        raise ValueError("precomputed embeddings need the encoder_identity that made them")
    if quality.LM in blocks and (lm_identity is None or lm_layer is None):
        raise ValueError("precomputed lm states need the lm_identity and lm_layer that made them")
    label = quality.weak_not_as_good(weak, strong, margin)
    if len(prompts) < 20:
        raise ConfigError(f"need at least 20 recorded outcomes to train, got {len(prompts)}")
    if label.sum() < 5 or (~label).sum() < 5:
        raise ConfigError(
            f"the outcomes need at least 5 of each case (strong better: {int(label.sum())}, "
            f"weak as good: {int((~label).sum())}) to learn which is which"
        )
    if embeddings is None and blocks:
        embeddings = prompt_vectors(prompts, blocks, encoder, lm, progress)
    predictor, held_out = quality.fit(prompts, weak, strong, embeddings=embeddings, margin=margin)
    assert held_out is not None  # calibrated
    need_strong = 1 - held_out
    threshold = predictor.threshold_for(target_strong_share)
    metrics: dict[str, Any] = {
        "rows": len(prompts),
        "weak_mean": round(float(np.mean(weak)), 4),
        "strong_mean": round(float(np.mean(strong)), 4),
        "weak_as_good_share": round(float((~label).mean()), 4),
        "target_strong_share": target_strong_share,
        "threshold": round(threshold, 4),
        "heldout_strong_share": round(float(np.mean(held_out < threshold)), 4),
    }
    if np.mean(strong) > np.mean(weak):
        metrics["heldout_apgr"] = round(apgr(need_strong, weak, strong), 4)
        metrics["heldout_cpt50"] = round(cpt(need_strong, weak, strong), 4)
    uses_sentences = any(block in quality.SENTENCE_BLOCKS for block in blocks)
    artefacts.save(
        output,
        KIND,
        ["weak", "strong"],
        predictor.to_arrays(),
        encoder=encoder_identity if uses_sentences else None,
        lm=lm_identity if quality.LM in blocks else None,
        lm_layer=lm_layer if quality.LM in blocks else None,
        blocks=list(blocks),
        lm_weight=quality.LM_WEIGHT if quality.LM in blocks else None,
        features=list(quality.FEATURE_NAMES),
        margin=margin,
        metrics=metrics,
        **meta,
    )
    return {
        "kind": KIND,
        "artefact": str(output),
        "metrics": metrics,
        "report": report(output, metrics),
    }


def report(output: Path, metrics: dict[str, Any]) -> str:
    """The metrics as lines a person reads in a terminal."""
    lines = [
        f"quality-cost gate -> {output}",
        f"  outcomes: {metrics['rows']}, weak as good on {metrics['weak_as_good_share']:.1%}; "
        f"mean quality weak {metrics['weak_mean']:.3f}, strong {metrics['strong_mean']:.3f}",
    ]
    if "heldout_apgr" in metrics:
        lines.append(
            f"  held-out (5-fold): APGR {metrics['heldout_apgr']:.3f} (random 0.5), "
            f"CPT(50%) {metrics['heldout_cpt50']:.1%} of requests to strong"
        )
    lines.append(
        f"  threshold {metrics['threshold']:.4f} on P(weak as good) for a "
        f"{metrics['target_strong_share']:.0%} strong share "
        f"(held-out share: {metrics['heldout_strong_share']:.1%})"
    )
    return "\n".join(lines)


def train_from_file(
    data: Path,
    output: Path,
    *,
    encoder: Any = None,
    lm: Any = None,
    target_strong_share: float = 0.5,
    margin: float = 0.0,
    progress: bool = True,
) -> dict[str, Any]:
    outcomes = load_outcomes(data)
    return train_quality(
        outcomes.prompts,
        outcomes.weak,
        outcomes.strong,
        output,
        encoder=encoder,
        lm=lm,
        target_strong_share=target_strong_share,
        margin=margin,
        progress=progress,
        data=data.name,
        data_sha256=outcomes.sha256,
        graded=outcomes.graded,
    )
