"""The ``image-facts`` expert: what can be told about an image offline, without a vision model.

For each image in the request it reports format, size, orientation, main colours (Pillow) and,
when RapidOCR is installed (``pip install rapidocr-onnxruntime``: its ONNX models ship inside the
wheel, nothing is downloaded), the text in it. That is enough for a text-only model to answer
"what does this receipt say" or "what colour is the logo" with no network and no GPU, which is
why it is a describer for the ``describe-images`` preparer when no vision model is at hand.
Its card says it reads images and that gates should not pick it for chat (``enabled: false``).
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

import structlog
from pydantic import Field

from moe_context.common import image_url, parts_of
from moe_context.fetch import FetchFailed, FetchPolicy, FetchRefused, SafeFetcher
from moe_core import ChatRequest, Expert, ExpertCard, ExpertResult, InvalidRequest, Options

log = structlog.get_logger(__name__)

# Colour names a reader knows, with a typical value of each: the nearest one names a colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark grey": (64, 64, 64),
    "grey": (128, 128, 128),
    "light grey": (192, 192, 192),
    "white": (255, 255, 255),
    "red": (220, 30, 30),
    "dark red": (128, 0, 0),
    "pink": (255, 150, 190),
    "orange": (255, 140, 0),
    "brown": (140, 80, 30),
    "beige": (230, 215, 175),
    "yellow": (250, 220, 30),
    "olive": (128, 128, 0),
    "green": (40, 170, 60),
    "dark green": (0, 90, 30),
    "teal": (0, 128, 128),
    "cyan": (0, 220, 230),
    "light blue": (140, 190, 240),
    "blue": (30, 80, 220),
    "navy": (0, 0, 110),
    "purple": (120, 40, 160),
    "magenta": (230, 40, 200),
}
OCR_SETTINGS = {"det_limit_type": "max", "det_limit_side_len": 960}
"""RapidOCR's detector scales an image's *shorter* side up to 736 pixels by default: a 420x90
sign became 3434x736 and took 6 to 12 s on two busy cores; bounding the longer side to 960
took 0.2 to 0.5 s for the same sign, read as one line (RapidOCR 1.4.4, three runs each)."""


class ImageFactsOptions(Options):
    ocr: Literal["auto", "on", "off"] = Field(
        "auto", description="Read text with RapidOCR: auto (when installed), on (required), off"
    )
    colours: int = Field(3, ge=1, le=8, description="Main colours reported")
    min_ocr_confidence: float = Field(0.5, ge=0, le=1)
    ocr_rotated: bool = Field(
        False, description="Also read upside-down text (an extra model pass per line)"
    )
    max_pixels: int = Field(40_000_000, ge=1, description="Larger images are refused")
    fetch: FetchPolicy = Field(
        default_factory=lambda: FetchPolicy(max_bytes=20_000_000),
        description="How image URLs (not data: URLs) are fetched",
    )


class ImageFactsExpert(Expert):
    """Format, size, main colours and the text (OCR) of each image, offline."""

    options: ImageFactsOptions

    def __init__(self, name: str, options: ImageFactsOptions) -> None:
        super().__init__(name, options)
        self.fetcher = SafeFetcher(options.fetch)
        self._ocr: Any = None
        self._ocr_lock = asyncio.Lock()

    def card(self) -> ExpertCard:
        return ExpertCard(
            provider="local",
            description="Facts about images: format, size, main colours, text (OCR)",
            modalities_in=["text", "image"],
            supports_vision=True,
            supports_streaming=False,
            enabled=False,
        )

    async def start(self) -> None:
        if self.options.ocr == "off":
            return
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            if self.options.ocr == "on":
                raise RuntimeError(
                    "ocr: on needs RapidOCR: pip install rapidocr-onnxruntime"
                ) from None
            log.info("image_facts.no_ocr", hint="pip install rapidocr-onnxruntime to read text")
            return
        settings = {**OCR_SETTINGS, "use_cls": self.options.ocr_rotated}
        self._ocr = await asyncio.to_thread(lambda: RapidOCR(**settings))

    async def generate(self, request: ChatRequest) -> ExpertResult:
        urls = [url for _, _, part in parts_of(request, "image_url") if (url := image_url(part))]
        if not urls:
            return ExpertResult(content="There is no image in the message.", model=self.name)
        facts = await asyncio.gather(
            *(self._facts(number, url) for number, url in enumerate(urls, 1))
        )
        return ExpertResult(content="\n\n".join(facts), model=self.name)

    async def _facts(self, number: int, url: str) -> str:
        data = await self._bytes(url)
        try:
            summary, pixels = await asyncio.to_thread(self._look, data)
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"image {number} cannot be read: {exc}", param="messages") from exc
        return f"Image {number}: {summary} {await self._text(pixels)}"

    async def _bytes(self, url: str) -> bytes:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            try:
                if header.endswith(";base64"):
                    return base64.b64decode(payload, validate=False)
                return unquote_to_bytes(payload)
            except ValueError as exc:
                raise InvalidRequest(f"a data: URL cannot be decoded: {exc}") from exc
        try:
            return (await self.fetcher.fetch(url)).body
        except (FetchRefused, FetchFailed) as exc:
            raise InvalidRequest(f"image {url} cannot be fetched: {exc}", param="messages") from exc

    def _look(self, data: bytes) -> tuple[str, Any]:
        """A sentence on format, size and colours, and the image to read text from."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > self.options.max_pixels:
                    raise ValueError(f"{width}x{height} pixels is over {self.options.max_pixels:,}")
                kind = image.format or "unknown format"
                frames = getattr(image, "n_frames", 1)
                rgb = _on_white(image)
        except Image.DecompressionBombError as exc:
            raise ValueError(str(exc)) from None
        shape = "square" if width == height else "landscape" if width > height else "portrait"
        animated = f", {frames} frames" if frames > 1 else ""
        colours = ", ".join(f"{name} {share:.0%}" for name, share in self._colours(rgb))
        return (
            f"a {kind} image, {width}x{height} pixels ({shape}{animated}). "
            f"Main colours: {colours}.",
            rgb,
        )

    def _colours(self, rgb: Any) -> list[tuple[str, float]]:
        """The main colours by name, with the share of the image each covers."""
        from PIL import Image

        small = rgb.copy()
        small.thumbnail((96, 96))
        quantized = small.quantize(colors=12, method=Image.Quantize.MEDIANCUT)
        palette = quantized.getpalette() or []
        total = small.width * small.height
        shares: dict[str, float] = {}
        for count, index in quantized.getcolors() or []:
            value = tuple(palette[index * 3 : index * 3 + 3])
            name = min(PALETTE, key=lambda n: _distance(PALETTE[n], value))
            shares[name] = shares.get(name, 0.0) + count / total
        ranked = sorted(shares.items(), key=lambda item: item[1], reverse=True)
        return ranked[: self.options.colours]

    async def _text(self, rgb: Any) -> str:
        if self._ocr is None:
            reason = "OCR is off" if self.options.ocr == "off" else "no OCR engine is installed"
            return f"Text in it was not read ({reason})."
        async with self._ocr_lock:  # one image at a time: OCR already uses every core
            lines = await asyncio.to_thread(self._read_text, rgb)
        if not lines:
            return "No text was found in it."
        return "Text in it (OCR, in reading order): " + " / ".join(f'"{t}"' for t in lines) + "."

    def _read_text(self, rgb: Any) -> list[str]:
        import numpy as np

        found, _ = self._ocr(np.asarray(rgb))
        return [
            str(text).strip()
            for _, text, confidence in found or []
            if float(confidence) >= self.options.min_ocr_confidence and str(text).strip()
        ]


def _on_white(image: Any) -> Any:
    """The first frame as RGB, transparent areas shown on white as a viewer would."""
    from PIL import Image

    frame = image.convert("RGBA")
    background = Image.new("RGBA", frame.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, frame).convert("RGB")


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    # Weighted for how the eye tells colours apart (the "redmean" approximation).
    mean_red = (a[0] + b[0]) / 2
    dr, dg, db = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return (2 + mean_red / 256) * dr * dr + 4 * dg * dg + (2 + (255 - mean_red) / 256) * db * db
