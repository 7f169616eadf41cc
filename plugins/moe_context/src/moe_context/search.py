"""The ``web-search`` preparer: search the web when a question needs fresh information.

Once per request it decides whether to search, writes the queries, asks the configured
provider (SearXNG, Brave or Tavily) and gives every expert the top results as numbered sources
(``[S1]``). The decision is a cheap expert's (``decider``: asked for JSON, through ``run.call``
so it is timed, tracked and costed like any call) or, without one or when its answer cannot be
read, keyword rules that spot questions about news, recent events, prices and dates.
A search that fails leaves a note and the experts answer without results.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import structlog
from pydantic import Field

from moe_context.common import PerRun, add_context, cite, clip, helper_call, in_helper_call
from moe_context.providers import ProviderOptions, SearchFailed, SearchProvider, SearchResult
from moe_core import (
    ChatMessage,
    ChatRequest,
    ExpertCard,
    MoEError,
    Options,
    Preparer,
    Run,
    require_known_experts,
)

log = structlog.get_logger(__name__)

FRESH = re.compile(
    r"\b(latest|news|today|tonight|yesterday|this (?:week|month|year)|current(?:ly)?|"
    r"recent(?:ly)?|right now|breaking|updates?|prices?|stock|weather|forecast|scores?|"
    r"who won|elections?|20[2-9]\d)\b",
    re.IGNORECASE,
)
DECIDE_PROMPT = (
    "Decide whether answering the question below needs a web search. Reply with JSON only. "
    "When it needs current or specific facts from the web (news, recent events, prices, "
    'releases, anything that may have changed lately), reply {{"search": true, "queries": '
    '["...", ...]}} with at most {limit} short search-engine queries; otherwise reply '
    '{{"search": false, "queries": []}}.\n\nQuestion: {question}'
)
HEADING = (
    "Web search results for this question ({provider}, searched just now for: {queries}). "
    "Use them for facts that may be recent and cite them by number, as [S1]."
)
MAX_QUERY_CHARS = 200


class WebSearchOptions(Options):
    provider: ProviderOptions
    decider: str | None = Field(
        None, description="Expert that decides and writes the queries; default: keyword rules"
    )
    always: bool = Field(False, description="Search for every request, with the question")
    max_queries: int = Field(2, ge=1, le=5)
    max_results: int = Field(5, ge=1, le=20, description="Results given to the experts")
    timeout_s: float = Field(10.0, gt=0, description="Limit for each provider request")
    max_snippet_chars: int = Field(500, ge=50)


@dataclass(frozen=True)
class Plan:
    queries: list[str]
    reason: str


@dataclass(frozen=True)
class Found:
    queries: list[str]
    results: list[SearchResult]


NOTHING = Found([], [])


def read_decision(text: str, limit: int) -> tuple[bool, list[str]] | None:
    """The first ``{"search": bool, "queries": [...]}`` object in a decider's reply, if any
    (a reasoning model may think aloud before it)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            data, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("search"), bool):
            raw = data.get("queries")
            queries = (
                [q.strip() for q in raw if isinstance(q, str) and q.strip()]
                if isinstance(raw, list)
                else []
            )
            return data["search"], [q[:MAX_QUERY_CHARS] for q in queries[:limit]]
    return None


class WebSearchPreparer(Preparer):
    """Searches the web when the question needs fresh information; results become sources."""

    options: WebSearchOptions

    def __init__(self, name: str, options: WebSearchOptions) -> None:
        super().__init__(name, options)
        self.provider = SearchProvider(options.provider, f"preparers.{name}")
        self._found: PerRun[Found] = PerRun()
        self._session: aiohttp.ClientSession | None = None

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        require_known_experts(experts, f"preparers.{self.name}", {"decider": self.options.decider})

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def prepare(self, run: Run, expert: str, request: ChatRequest) -> ChatRequest:
        if in_helper_call():
            return request
        question = run.request.last_user_text().strip()
        if not question:
            return request
        options = self.options
        if options.decider is None and not options.always and FRESH.search(question) is None:
            return request  # the keyword rules say no: decided without a task or a note
        found = await self._found.once(run, "results", lambda: self._search(run, question))
        if not found.results:
            return request
        return add_context(request, run.card(expert), self._block(found))

    async def _search(self, run: Run, question: str) -> Found:
        plan = await self._plan(run, question)
        if plan is None:
            return NOTHING
        assert self._session is not None, "started before the first call"
        kind = self.options.provider.kind
        found = await asyncio.gather(
            *(
                self.provider.search(self._session, query, self.options.max_results)
                for query in plan.queries
            ),
            return_exceptions=True,
        )
        results: list[SearchResult] = []
        seen: set[str] = set()
        for query, outcome in zip(plan.queries, found, strict=True):
            if isinstance(outcome, SearchFailed | aiohttp.ClientError | TimeoutError):
                run.note(f"{self.name}: {kind} search for {query!r} failed: {outcome}")
                log.warning("web_search.failed", query=query, error=str(outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                for result in outcome:
                    if result.url not in seen:
                        seen.add(result.url)
                        results.append(result)
        results = results[: self.options.max_results]
        run.note(
            f"{self.name}: searched {kind} for {', '.join(map(repr, plan.queries))} "
            f"({plan.reason}): {len(results)} result(s)"
        )
        for number, result in enumerate(results, 1):
            cite(run, self.name, f"S{number}", result.title, result.url)
        return Found(plan.queries, results)

    async def _plan(self, run: Run, question: str) -> Plan | None:
        """The queries to search for, or None when the question needs no search."""
        if self.options.always:
            return Plan([question[:MAX_QUERY_CHARS]], "searches every request")
        decider = self.options.decider
        if decider is not None:
            prompt = DECIDE_PROMPT.format(limit=self.options.max_queries, question=question)
            request = ChatRequest(
                model=decider,
                messages=[ChatMessage(role="user", content=prompt)],
                temperature=0.0,
                max_tokens=300,
            )
            try:
                reply = (await helper_call(run, decider, request)).content
            except MoEError as exc:
                reply, failure = "", f"{decider!r} failed: {exc.message}"
            else:
                failure = f"{decider!r} answered no readable decision"
            decision = read_decision(reply, self.options.max_queries)
            if decision is not None:
                needed, queries = decision
                if not needed:
                    run.note(f"{self.name}: {decider!r} judged that no search is needed")
                    return None
                return Plan(queries or [question[:MAX_QUERY_CHARS]], f"decided by {decider!r}")
            run.note(f"{self.name}: {failure}; keyword rules decide")
        match = FRESH.search(question)
        if match is None:
            return None
        return Plan([question[:MAX_QUERY_CHARS]], f"the question says {match.group(0)!r}")

    def _block(self, found: Found) -> str:
        kind = self.options.provider.kind
        lines = [HEADING.format(provider=kind, queries="; ".join(found.queries))]
        for number, result in enumerate(found.results, 1):
            published = f" ({result.published})" if result.published else ""
            snippet = clip(result.snippet, self.options.max_snippet_chars)
            lines.append(f"\n[S{number}] {result.title}{published} — {result.url}\n{snippet}")
        return "\n".join(lines)
