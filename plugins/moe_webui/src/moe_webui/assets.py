"""The page's files: read once from the package, served from memory with validators.

The files are few and small (about 150 kB together), so holding them in memory, with a gzipped
copy made once, costs less than touching the disk on every request and lets each answer carry a
content hash as its ``ETag``: a browser revalidates with ``If-None-Match`` and gets a 304 when
nothing changed. Vendored libraries have their version in their file name, so they are cached for
a year without revalidating; the page's own files are revalidated on every load (``no-cache``),
so an upgraded gateway is never paired with a stale script.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

STATIC = "static"
IMMUTABLE_FOLDER = "vendor/"
# What the page may load and connect to: the gateway only (media arrive as data: URLs). An
# answer's Markdown cannot pull an image or a script from elsewhere, even past the sanitiser.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".md": "text/markdown",
}
_TEXT = ("text/", "image/svg+xml")
# Below this, gzip saves too little to be worth a second representation.
_GZIP_FROM_BYTES = 1024


@dataclass(frozen=True)
class Asset:
    """One file as it is served: its bytes, a gzipped copy when that is smaller, its headers."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    charset: str | None
    etag: str
    cache_control: str

    def response(self, request: web.Request) -> web.Response:
        """The file, gzipped if the client accepts it, or a 304 if the client's copy is current."""
        # A client that lists gzip accepts it; "gzip;q=0" (a refusal) is not sent by browsers.
        gzipped = self.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "")
        # Each representation has its own tag, so a cache never answers one with the other.
        etag = f"{self.etag}-gz" if gzipped else self.etag
        headers = {
            "Cache-Control": self.cache_control,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if self.content_type == "text/html":
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            headers["Referrer-Policy"] = "no-referrer"
        if any(tag.value == etag for tag in request.if_none_match or ()):
            response = web.Response(status=304, headers=headers)
        else:
            body = self.gzipped if gzipped and self.gzipped is not None else self.body
            response = web.Response(
                body=body, headers=headers, content_type=self.content_type, charset=self.charset
            )
            if gzipped:
                response.headers["Content-Encoding"] = "gzip"
        response.etag = etag
        return response


def load_assets(package: str = __package__ or "moe_webui") -> dict[str, Asset]:
    """Every file under the package's ``static`` folder, by its path there (``js/main.js``)."""
    root = resources.files(package).joinpath(STATIC)
    return {path: _asset(path, item.read_bytes()) for path, item in _walk(root, "")}


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.startswith("."):
            continue
        if item.is_dir():
            yield from _walk(item, f"{prefix}{item.name}/")
        else:
            yield f"{prefix}{item.name}", item


def _asset(path: str, body: bytes) -> Asset:
    suffix = path[path.rfind(".") :] if "." in path else ""
    content_type = _TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    text = content_type.startswith(_TEXT)
    gzipped = None
    if text and len(body) >= _GZIP_FROM_BYTES:
        # mtime=0: the same bytes on every start, so the gzipped tag stays valid across restarts.
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    immutable = path.startswith(IMMUTABLE_FOLDER)
    return Asset(
        body=body,
        gzipped=gzipped,
        content_type=content_type,
        charset="utf-8" if text else None,
        etag=hashlib.sha256(body).hexdigest()[:20],
        cache_control="public, max-age=31536000, immutable" if immutable else "no-cache",
    )
