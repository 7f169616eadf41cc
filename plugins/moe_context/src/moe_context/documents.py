"""Turning what a user linked or uploaded into text an expert can read.

Web pages go through trafilatura, which keeps an article's text and drops navigation, footers
and scripts; PDFs through pypdf; text, Markdown, CSV and JSON are read as UTF-8. Images are not
turned into text here: they stay images, for a vision expert or the ``describe-images`` preparer.
All of it is CPU work on untrusted input, so callers run it in a thread.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

TEXT_TYPES = {
    "txt": "text/plain",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
}
IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
FILE_TYPES = {**TEXT_TYPES, "pdf": "application/pdf", **IMAGE_TYPES}
"""Extension to media type, for every kind of file the files API takes."""
PILLOW_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


class UnreadableDocument(ValueError):
    """The bytes are not what their name or type says, or hold no text."""


@dataclass(frozen=True)
class Document:
    title: str | None
    text: str
    pages: int | None = None


def extension(filename: str) -> str:
    return PurePosixPath(filename).suffix.lower().lstrip(".")


def checked_type(filename: str, data: bytes) -> str:
    """The media type of an upload, after checking that the bytes are of the kind its name says.

    :raises UnreadableDocument: an extension not taken, or content of another kind (a "PDF"
        that is not one, text that is not UTF-8, JSON that does not parse).
    """
    ext = extension(filename)
    # A name without extension (README, a log) is taken as plain text if it is UTF-8 text.
    media_type = FILE_TYPES.get(ext) if ext else "text/plain"
    if media_type is None:
        raise UnreadableDocument(
            f"files of type .{ext} are not accepted; "
            f"accepted: {', '.join('.' + e for e in FILE_TYPES)}"
        )
    if media_type == "application/pdf":
        if not data.startswith(b"%PDF-"):
            raise UnreadableDocument(f"{filename!r} is not a PDF")
    elif media_type in PILLOW_FORMATS:
        found = image_format(data)
        if found != PILLOW_FORMATS[media_type]:
            raise UnreadableDocument(f"{filename!r} is not a {PILLOW_FORMATS[media_type]} image")
    else:
        text = _utf8(filename, data)
        if media_type == "application/json":
            try:
                json.loads(text)
            except ValueError as exc:
                raise UnreadableDocument(f"{filename!r} is not valid JSON: {exc}") from None
    return media_type


def image_format(data: bytes) -> str | None:
    """Pillow's name for the image format of ``data`` (``PNG``...), or None if not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return image.format
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None


def document_text(
    data: bytes, media_type: str, *, url: str | None = None, charset: str | None = None
) -> Document:
    """The text of a page or file of ``media_type`` (text in ``charset``, default UTF-8).

    :raises UnreadableDocument: a type with no text (an image, a binary) or a broken file.
    """
    if media_type in HTML_TYPES:
        return _html(data, url)
    if media_type == "application/pdf":
        return _pdf(data)
    if media_type.startswith("text/") or media_type == "application/json":
        try:
            return Document(title=None, text=data.decode(charset or "utf-8", "replace"))
        except LookupError:  # a charset Python does not know
            return Document(title=None, text=data.decode("utf-8", "replace"))
    raise UnreadableDocument(f"no text can be read from {media_type}")


def _utf8(filename: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableDocument(f"{filename!r} is not UTF-8 text") from None
    if "\x00" in text:
        raise UnreadableDocument(f"{filename!r} is not text (it holds NUL bytes)")
    return text


def _html(data: bytes, url: str | None) -> Document:
    import trafilatura

    document = trafilatura.bare_extraction(
        data, url=url, with_metadata=True, include_comments=False, include_tables=True
    )
    title = getattr(document, "title", None)
    text = getattr(document, "text", None)
    if not text:
        # No main text found (a short page, a listing): all of its visible text, then.
        text = trafilatura.html2txt(data)
    if not text:
        raise UnreadableDocument("the page has no readable text")
    return Document(title=title, text=text)


def _pdf(data: bytes) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableDocument(f"the PDF cannot be read: {exc}") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise UnreadableDocument("the PDF has no text layer (a scan?)")
    return Document(title=title, text=text, pages=len(pages))
