"""The ``files`` frontend: OpenAI's files API, plus the short routes older clients use.

- ``POST /v1/files`` (multipart: ``file``, ``purpose``), ``GET /v1/files`` (``purpose``,
  ``limit``, ``after``, ``order``), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``,
  ``DELETE /v1/files/{id}``: the shapes the official SDKs read (``client.files.create`` ...).
- ``POST /files/upload`` (``purpose`` optional), ``GET /files/list``, ``DELETE /files/{name}``
  (every file of the caller with that name, or the file with that id).

A caller sees only its own files (see :mod:`moe_context.callers`); a file of another key is
answered exactly like one that does not exist. Errors are OpenAI's envelope: 413 over
``files.max_bytes``, 415 for content that is not what its name says, 404 for unknown ids.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from moe_context.callers import owner_of
from moe_context.documents import UnreadableDocument, checked_type
from moe_context.filestore import SECTION, FilesConfig, FileStore, StoredFile, safe_filename
from moe_core import Frontend, InvalidRequest, NotFound, PayloadTooLarge
from moe_core.appkeys import BODY_TIMEOUT_KEY, MOE_KEY
from moe_core.errors import RequestTimeout, UnsupportedMediaType
from moe_core.http import json_response
from moe_core.orchestrator import MoE

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
MULTIPART_SLACK = 64 * 1024
"""Room for the multipart framing and the other fields around the file itself."""
CHUNK = 256 * 1024
STORE_KEY: web.AppKey[FileStore] = web.AppKey("moe_context_files")


def shared_store(moe: MoE) -> FileStore:
    """The gateway's one file store, shared by the routes and the ``read-files`` preparer."""
    config = moe.config.section(SECTION) or FilesConfig()
    return moe.resource(SECTION, lambda: FileStore(config))


class FilesFrontend(Frontend):
    """OpenAI's files API and the short file routes."""

    def setup(self, app: web.Application) -> None:
        app[STORE_KEY] = shared_store(app[MOE_KEY])
        app.router.add_post("/v1/files", upload_openai)
        app.router.add_get("/v1/files", list_files)
        app.router.add_get("/v1/files/{file_id}", retrieve)
        app.router.add_get("/v1/files/{file_id}/content", content)
        app.router.add_delete("/v1/files/{file_id}", delete)
        app.router.add_post("/files/upload", upload_short)
        app.router.add_get("/files/list", list_files)
        app.router.add_delete("/files/{name}", delete_named)


async def upload_openai(request: web.Request) -> web.Response:
    return json_response((await _upload(request, default_purpose=None)).openai())


async def upload_short(request: web.Request) -> web.Response:
    return json_response((await _upload(request, default_purpose="user_data")).openai())


async def list_files(request: web.Request) -> web.Response:
    query = request.query
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
    try:
        limit = int(query.get("limit", "10000"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 10_000:
        raise InvalidRequest("limit must be an integer from 1 to 10000", param="limit")
    files, more = await request.app[STORE_KEY].list(
        owner_of(request),
        purpose=query.get("purpose"),
        after=query.get("after"),
        limit=limit,
        order=order,  # type: ignore[arg-type]  # checked above
    )
    return json_response(
        {
            "object": "list",
            "data": [file.openai() for file in files],
            "first_id": files[0].id if files else None,
            "last_id": files[-1].id if files else None,
            "has_more": more,
        }
    )


async def retrieve(request: web.Request) -> web.Response:
    return json_response((await _owned(request)).openai())


async def content(request: web.Request) -> web.Response:
    file = await _owned(request)
    body = await request.app[STORE_KEY].read(file)
    quoted = file.filename.replace("\\", "\\\\").replace('"', '\\"')
    return web.Response(
        body=body,
        content_type=file.media_type,
        headers={"Content-Disposition": f'attachment; filename="{quoted}"'},
    )


async def delete(request: web.Request) -> web.Response:
    file = await _owned(request)
    await request.app[STORE_KEY].delete(file)
    return json_response({"id": file.id, "object": "file", "deleted": True})


async def delete_named(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    owner, name = owner_of(request), request.match_info["name"]
    by_id = await store.get(owner, name)
    files = [by_id] if by_id is not None else await store.named(owner, name)
    if not files:
        raise NotFound(f"No file named {name!r}", param="name")
    for file in files:
        await store.delete(file)
    return json_response(
        {"object": "file", "filename": name, "deleted": True, "ids": [f.id for f in files]}
    )


async def _owned(request: web.Request) -> StoredFile:
    file_id = request.match_info["file_id"]
    file = await request.app[STORE_KEY].get(owner_of(request), file_id)
    if file is None:
        raise NotFound(f"No such File object: {file_id}", param="file_id")
    return file


async def _upload(request: web.Request, *, default_purpose: str | None) -> StoredFile:
    store = request.app[STORE_KEY]
    limit = store.config.max_bytes
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            "Content-Type must be multipart/form-data with a 'file' part, "
            f"got {request.content_type or 'none'!r}"
        )
    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise _too_large(limit, request.content_length)
    fields: dict[str, str] = {}
    staged: Path | None = None
    filename = ""
    size = 0
    seconds = request.app[BODY_TIMEOUT_KEY]
    try:
        try:
            # A client that sends its upload slowly must not hold a connection for long.
            async with asyncio.timeout(seconds):
                reader = await request.multipart()
                while (part := await reader.next()) is not None:
                    if not isinstance(part, BodyPartReader):
                        raise InvalidRequest("nested multipart bodies are not accepted")
                    if part.name == "file" and staged is None:
                        filename, staged = part.filename or "", store.incoming()
                        size = await _save(part, staged, limit)
                    elif part.name == "purpose":
                        chunk = await part.read_chunk(1024)
                        fields[part.name] = chunk.decode("utf-8", "replace")
                        await part.release()
                    else:
                        await part.release()
        except TimeoutError:
            raise RequestTimeout(
                f"The request body did not arrive within {seconds:g} s",
                headers={"Connection": "close"},
            ) from None
        except (ValueError, AssertionError, BadHttpMessage, web.HTTPException) as exc:
            raise InvalidRequest(f"The multipart body cannot be read: {exc}") from None
        if staged is None:
            raise InvalidRequest("The body has no 'file' part", param="file")
        purpose = fields.get("purpose", "").strip() or default_purpose
        if purpose is None:
            raise InvalidRequest("'purpose' is required", param="purpose")
        if purpose not in PURPOSES:
            raise InvalidRequest(
                f"purpose must be one of {', '.join(sorted(PURPOSES))}, not {purpose!r}",
                param="purpose",
            )
        filename = safe_filename(filename)
        media_type = await asyncio.to_thread(_checked, filename, staged)
        return await store.add(
            staged,
            owner=owner_of(request),
            filename=filename,
            purpose=purpose,
            media_type=media_type,
            size=size,
        )
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)


async def _save(part: BodyPartReader, path: Path, limit: int) -> int:
    """Write the part to ``path``, refusing it once it passes ``limit`` bytes."""
    size = 0
    # Small sequential writes land in the page cache in microseconds: not worth a thread each.
    with path.open("wb") as handle:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                # The rest of the body is not read: the connection cannot serve another request.
                raise _too_large(limit, headers={"Connection": "close"})
            handle.write(chunk)
    return size


def _checked(filename: str, path: Path) -> str:
    try:
        return checked_type(filename, path.read_bytes())
    except UnreadableDocument as exc:
        raise UnsupportedMediaType(str(exc), param="file", code="unsupported_file") from None


def _too_large(
    limit: int, size: int | None = None, headers: dict[str, str] | None = None
) -> PayloadTooLarge:
    got = f" ({size:,} bytes sent)" if size is not None else ""
    return PayloadTooLarge(
        f"The file is larger than the {limit:,} bytes this gateway accepts{got}",
        param="file",
        code="file_too_large",
        headers=headers,
    )
