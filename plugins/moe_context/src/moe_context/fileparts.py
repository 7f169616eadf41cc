"""The ``read-files`` preparer: files referenced in chat messages, given to experts as content.

A message may carry a file part as OpenAI's chat API defines it, either a file uploaded through
the files API (``{"type": "file", "file": {"file_id": "file-..."}}``) or one inline
(``{"file": {"filename": "notes.pdf", "file_data": "data:application/pdf;base64,..."}}``).
Text, Markdown, CSV, JSON and PDF files become a text part with their text; images become an
image part, which a vision expert reads and the ``describe-images`` preparer (listed after this
one) describes for the others. A file id the caller does not own is refused exactly like an
unknown one (400 ``file_not_found``), so one key cannot read another's files through a chat.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from typing import Any

from pydantic import Field

from moe_context.callers import CALLER
from moe_context.common import PerRun, clip, in_helper_call, parts_of, replace_parts, text_part
from moe_context.documents import IMAGE_TYPES, UnreadableDocument, checked_type, document_text
from moe_context.fileroutes import shared_store
from moe_context.filestore import FilesConfig, FileStore
from moe_context.images import DescribeImagesPreparer
from moe_core import ChatRequest, ConfigError, InvalidRequest, Options, Preparer, Run
from moe_core.models import ContentPart
from moe_core.orchestrator import MoE


class ReadFilesOptions(Options):
    max_chars: int | None = Field(
        None, description="Characters of one file given to experts; default: files.max_chars"
    )


class ReadFilesPreparer(Preparer):
    """Replaces file parts with the file's text (or image) for every expert."""

    options: ReadFilesOptions

    def __init__(self, name: str, options: ReadFilesOptions) -> None:
        super().__init__(name, options)
        self._parts: PerRun[ContentPart] = PerRun()
        self.store: FileStore | None = None

    def attach(self, moe: MoE) -> None:
        self.store = shared_store(moe)
        config: FilesConfig = self.store.config
        self.max_chars = self.options.max_chars or config.max_chars
        names = [preparer.name for preparer in moe.preparers]
        for preparer in moe.preparers:
            if isinstance(preparer, DescribeImagesPreparer) and (
                names.index(preparer.name) < names.index(self.name)
            ):
                raise ConfigError(
                    f"preparers: list {self.name!r} before {preparer.name!r}, so that images "
                    "in files are described for experts that cannot see them"
                )

    async def prepare(self, run: Run, expert: str, request: ChatRequest) -> ChatRequest:
        if in_helper_call():
            return request
        found = list(parts_of(request, "file"))
        if not found:
            return request
        owner = CALLER.get()
        replacements: dict[tuple[int, int], ContentPart] = {}
        for m, p, part in found:
            reference = getattr(part, "file", None)
            if not isinstance(reference, dict):
                raise InvalidRequest(
                    "a file part needs a 'file' object with file_id or file_data",
                    param=f"messages[{m}].content[{p}].file",
                )
            key = reference.get("file_id") or _digest(reference.get("file_data"))
            replacements[(m, p)] = await self._parts.once(
                run, key, lambda ref=reference, at=(m, p): self._part(run, ref, owner, at)
            )
        return replace_parts(request, replacements)

    async def _part(
        self, run: Run, reference: dict[str, Any], owner: str | None, at: tuple[int, int]
    ) -> ContentPart:
        param = f"messages[{at[0]}].content[{at[1]}].file"
        file_id = reference.get("file_id")
        if isinstance(file_id, str):
            assert self.store is not None, "attached before the first call"
            stored = await self.store.get(owner, file_id)
            if stored is None:
                raise InvalidRequest(
                    f"file {file_id!r} does not exist (or belongs to another key)",
                    param=f"{param}.file_id",
                    code="file_not_found",
                )
            name, data = stored.filename, await self.store.read(stored)
            media_type, label = stored.media_type, f"{name!r} ({file_id})"
        else:
            name = str(reference.get("filename") or "")
            data = _inline(reference.get("file_data"), param)
            try:
                media_type = await asyncio.to_thread(checked_type, name, data)
            except UnreadableDocument as exc:
                raise InvalidRequest(str(exc), param=f"{param}.filename") from None
            label = repr(name)
        if media_type in IMAGE_TYPES.values():
            run.note(f"{self.name}: {label} given as an image")
            encoded = base64.b64encode(data).decode("ascii")
            url = f"data:{media_type};base64,{encoded}"
            return ContentPart(type="image_url", image_url={"url": url})
        try:
            document = await asyncio.to_thread(document_text, data, media_type)
        except UnreadableDocument as exc:
            run.note(f"{self.name}: no text could be read from {label}: {exc}")
            return text_part(f"[File {label}: no text could be read ({exc}).]")
        pages = f", {document.pages} page(s)" if document.pages else ""
        run.note(f"{self.name}: {label} given as text ({len(document.text):,} characters{pages})")
        return text_part(f"[File {label}{pages}]\n{clip(document.text, self.max_chars)}")


def _inline(value: Any, param: str) -> bytes:
    """The bytes of ``file_data``: a base64 data: URL, or bare base64."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest("a file part needs file_id or file_data", param=param)
    payload = value.partition(",")[2] if value.startswith("data:") else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("file_data is not valid base64", param=f"{param}.file_data") from None


def _digest(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()
