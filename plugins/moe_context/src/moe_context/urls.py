"""The ``read-urls`` preparer: pages linked in the user's message, read and given as context.

Each http(s) URL in the last user message is fetched under the preparer's
:class:`~moe_context.fetch.FetchPolicy` (public addresses only unless allowed, limits on size,
time and redirects), its main text extracted, and every expert of the request gets the pages
as numbered sources it can cite (``[P1]``). A page that cannot be read is listed with the
reason, so the expert says so instead of guessing what it holds.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import structlog
from pydantic import Field

from moe_context.common import PerRun, add_context, cite, clip, in_helper_call
from moe_context.documents import UnreadableDocument, document_text
from moe_context.fetch import FetchFailed, FetchPolicy, FetchRefused, SafeFetcher
from moe_core import ChatRequest, Preparer, Run

log = structlog.get_logger(__name__)

URL_PATTERN = re.compile(r"https?://[^\s<>\"'`{}|\\^]+", re.IGNORECASE)
TRAILING = ".,;:!?)]}'\""
HEADING = (
    "The user's message links to the web pages below; their text was fetched just now. "
    "Answer from them where they help and cite them by number, as [P1]."
)


class ReadUrlsOptions(FetchPolicy):
    max_urls: int = Field(3, ge=1, le=20, description="URLs read from one message at most")
    max_chars: int = Field(8000, ge=100, description="Characters of one page given to experts")


@dataclass(frozen=True)
class Page:
    url: str
    title: str | None = None
    text: str | None = None
    error: str | None = None
    truncated: bool = False


def urls_in(text: str, limit: int) -> list[str]:
    """The distinct http(s) URLs in ``text``, in order, without trailing punctuation."""
    found: list[str] = []
    for match in URL_PATTERN.finditer(text):
        url = match.group(0).rstrip(TRAILING)
        if url not in found:
            found.append(url)
    return found[:limit]


class ReadUrlsPreparer(Preparer):
    """Reads the pages linked in the user's message and gives their text to every expert."""

    options: ReadUrlsOptions

    def __init__(self, name: str, options: ReadUrlsOptions) -> None:
        super().__init__(name, options)
        self.fetcher = SafeFetcher(options)
        self._pages: PerRun[list[Page]] = PerRun()

    async def prepare(self, run: Run, expert: str, request: ChatRequest) -> ChatRequest:
        if in_helper_call():
            return request
        urls = urls_in(run.request.last_user_text(), self.options.max_urls)
        if not urls:
            return request
        pages = await self._pages.once(run, "pages", lambda: self._read_all(run, urls))
        return add_context(request, run.card(expert), self._block(pages))

    async def _read_all(self, run: Run, urls: list[str]) -> list[Page]:
        """Every page, read at once; the readable ones are noted as sources."""
        pages = await asyncio.gather(*(self._read(run, url) for url in urls))
        for number, page in enumerate(pages, 1):
            if page.error is None:
                cite(run, self.name, f"P{number}", page.title, page.url)
        return list(pages)

    async def _read(self, run: Run, url: str) -> Page:
        try:
            fetched = await self.fetcher.fetch(url)
            document = await asyncio.to_thread(
                document_text,
                fetched.body,
                fetched.content_type,
                url=fetched.url,
                charset=fetched.charset,
            )
        except (FetchRefused, FetchFailed, UnreadableDocument) as exc:
            run.note(f"{self.name}: {url} not read: {exc}")
            log.info("read_urls.failed", url=url, error=str(exc))
            return Page(url=url, error=str(exc))
        return Page(
            url=fetched.url, title=document.title, text=document.text, truncated=fetched.truncated
        )

    def _block(self, pages: list[Page]) -> str:
        lines = [HEADING]
        for number, page in enumerate(pages, 1):
            if page.error is not None:
                lines.append(f"\n[P{number}] {page.url}\n(could not be read: {page.error})")
            else:
                title = f"{page.title} — " if page.title else ""
                text = clip(page.text or "", self.options.max_chars)
                if page.truncated:
                    text += f"\n[…only the first {self.options.max_bytes:,} bytes were read]"
                lines.append(f"\n[P{number}] {title}{page.url}\n{text}")
        return "\n".join(lines)
