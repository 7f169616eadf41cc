"""Uploaded files: their bytes in one folder, their metadata in a small SQLite file beside them.

A file's bytes are stored under its generated id (``file-`` and 24 hex digits), never under a
name the caller chose, so no name (``../../etc/passwd``) can reach outside the folder; the
caller's name is kept as metadata only, reduced to its last path component. Each file belongs
to the key that uploaded it (a SHA-256 of the key is stored, never the key): with keys
configured, another key neither sees nor reads it. Uploads land in ``incoming/`` first and are
moved into place only once checked and counted against the store's limits, inside one SQLite
write transaction, so concurrent uploads (and several worker processes) cannot overshoot them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import Field

from moe_core import Options, PayloadTooLarge
from moe_core.artefacts import data_dir

SECTION = "files"
FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_owner ON files (owner, seq);
"""
COLUMNS = "id, owner, filename, purpose, bytes, media_type, created_at"


class FilesConfig(Options):
    """The ``files`` section: where uploads are kept and how much they may take."""

    dir: Path | None = Field(None, description="Default: <data dir>/files ($MOE_DATA_DIR)")
    max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest upload (413 above)")
    max_files: int = Field(10_000, ge=1, description="Files kept at most, all keys together")
    max_total_bytes: int = Field(2 * 1024**3, ge=1, description="Bytes kept at most")
    max_chars: int = Field(
        50_000, ge=100, description="Characters of one file's text given to an expert"
    )


@dataclass(frozen=True)
class StoredFile:
    id: str
    owner: str | None
    filename: str
    purpose: str
    bytes: int
    media_type: str
    created_at: int

    def openai(self) -> dict[str, Any]:
        """The file as OpenAI's API shows it."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


def safe_filename(name: str | None) -> str:
    """The last component of ``name``, without control characters, at most 255 characters.

    Percent-escapes are decoded first: some clients (aiohttp's) send names that way."""
    last = PurePosixPath(unquote(name or "").replace("\\", "/")).name
    cleaned = "".join(c for c in last if c.isprintable()).strip()
    return cleaned[:255] if cleaned not in ("", ".", "..") else "upload"


class FileStore:
    """The files of one gateway; every method that touches disk runs in a thread."""

    def __init__(self, config: FilesConfig) -> None:
        self.config = config
        self.root = (config.dir or data_dir() / "files").expanduser()
        self._ready = False

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    async def close(self) -> None:
        return None

    def _prepare(self) -> None:
        if self._ready:
            return
        for folder in (self.root / "blobs", self.root / "incoming"):
            folder.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self._ready = True

    def _connect(self) -> sqlite3.Connection:
        # One connection per operation: cheap for SQLite, and nothing is shared between threads.
        return sqlite3.connect(self.root / "files.sqlite3", timeout=30, isolation_level=None)

    def incoming(self) -> Path:
        """A fresh path to write an upload to before it is checked."""
        self._prepare()
        return self.root / "incoming" / uuid.uuid4().hex

    def blob(self, file_id: str) -> Path:
        if not FILE_ID.match(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.root / "blobs" / file_id

    async def add(
        self,
        staged: Path,
        *,
        owner: str | None,
        filename: str,
        purpose: str,
        media_type: str,
        size: int,
    ) -> StoredFile:
        """Keep the checked upload at ``staged``.

        :raises PayloadTooLarge: the store would pass ``max_files`` or ``max_total_bytes``.
        """
        stored = StoredFile(
            id=f"file-{uuid.uuid4().hex[:24]}",
            owner=owner,
            filename=safe_filename(filename),
            purpose=purpose,
            bytes=size,
            media_type=media_type,
            created_at=int(time.time()),
        )
        await asyncio.to_thread(self._add, staged, stored)
        return stored

    def _add(self, staged: Path, stored: StoredFile) -> None:
        self._prepare()
        try:
            with closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")  # the limits are checked and kept under one lock
                try:
                    count, total = db.execute(
                        "SELECT count(*), coalesce(sum(bytes), 0) FROM files"
                    ).fetchone()
                    if count + 1 > self.config.max_files or (
                        total + stored.bytes > self.config.max_total_bytes
                    ):
                        raise PayloadTooLarge(
                            f"the file store is full ({count} files, {total:,} bytes; limits "
                            f"{self.config.max_files} files, {self.config.max_total_bytes:,} "
                            "bytes): delete files first",
                            code="storage_full",
                        )
                    db.execute(
                        f"INSERT INTO files ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        tuple(asdict(stored).values()),
                    )
                    staged.replace(self.blob(stored.id))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        finally:
            staged.unlink(missing_ok=True)

    async def get(self, owner: str | None, file_id: str) -> StoredFile | None:
        """The file, if it exists and belongs to ``owner``."""
        if not FILE_ID.match(file_id):
            return None
        rows = await self._select("WHERE id = ? AND owner IS ?", (file_id, owner))
        return rows[0] if rows else None

    async def list(
        self,
        owner: str | None,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10_000,
        order: Literal["asc", "desc"] = "desc",
    ) -> tuple[list[StoredFile], bool]:
        """``owner``'s files by upload time, and whether more follow the ``limit``."""
        where, args = ["owner IS ?"], [owner]
        if purpose is not None:
            where.append("purpose = ?")
            args.append(purpose)
        if after is not None:
            compare = "<" if order == "desc" else ">"
            where.append(f"seq {compare} (SELECT seq FROM files WHERE id = ? AND owner IS ?)")
            args += [after, owner]
        direction = "DESC" if order == "desc" else "ASC"
        clause = f"WHERE {' AND '.join(where)} ORDER BY seq {direction} LIMIT ?"
        rows = await self._select(clause, (*args, limit + 1))
        return rows[:limit], len(rows) > limit

    async def named(self, owner: str | None, filename: str) -> list[StoredFile]:
        return await self._select("WHERE owner IS ? AND filename = ?", (owner, filename))

    async def delete(self, file: StoredFile) -> None:
        def remove() -> None:
            with closing(self._connect()) as db:
                db.execute("DELETE FROM files WHERE id = ?", (file.id,))
            self.blob(file.id).unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    async def read(self, file: StoredFile) -> bytes:
        return await asyncio.to_thread(self.blob(file.id).read_bytes)

    async def _select(self, clause: str, args: tuple[Any, ...]) -> list[StoredFile]:
        def select() -> list[StoredFile]:
            self._prepare()
            with closing(self._connect()) as db:
                rows = db.execute(f"SELECT {COLUMNS} FROM files {clause}", args).fetchall()
            return [StoredFile(*row) for row in rows]

        return await asyncio.to_thread(select)
