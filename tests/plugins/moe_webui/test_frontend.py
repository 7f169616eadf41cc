"""The page's files over HTTP: where they are, their types, their caching, and who else is at /."""

from __future__ import annotations

import gzip
import re

import pytest

from moe_webui.assets import load_assets

ECHO = {"experts": {"general": {"kind": "echo"}}, "server": {"access_log": False}}


async def test_the_chat_page_is_served_at_the_root_and_under_ui(gateway):
    client = await gateway(ECHO)
    for path in ("/", "/ui/"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == "text/html" and response.charset == "utf-8"
        page = await response.text()
        assert '<script type="module" src="/ui/js/main.js">' in page
        # Only the gateway itself may be reached from the page.
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    moved = await client.get("/ui", allow_redirects=False)
    assert moved.status == 308 and moved.headers["Location"] == "/ui/"


async def test_every_file_the_page_loads_is_served_with_its_type(gateway):
    client = await gateway(ECHO)
    page = await (await client.get("/")).text()
    linked = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page)
    assert "/ui/app.css" in linked and "/ui/js/main.js" in linked
    main = await (await client.get("/ui/js/main.js")).text()
    imported = {f"/ui/js/{name}" for name in re.findall(r'from "\./([\w.-]+)"', main)}
    assert "/ui/js/chat.js" in imported
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in {*linked, *imported, "/ui/vendor/marked-18.3.0.esm.js"}:
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == types[path[path.rfind(".") :]], path
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_files_are_revalidated_by_etag_and_vendored_ones_cached_for_good(gateway):
    client = await gateway(ECHO)
    first = await client.get("/ui/js/chat.js", headers={"Accept-Encoding": "identity"})
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    again = await client.get(
        "/ui/js/chat.js", headers={"If-None-Match": etag, "Accept-Encoding": "identity"}
    )
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == etag
    vendored = await client.get("/ui/vendor/purify-3.5.0.min.js")
    assert "immutable" in vendored.headers["Cache-Control"]
    assert "max-age=31536000" in vendored.headers["Cache-Control"]


async def test_text_files_travel_gzipped_to_clients_that_accept_it(gateway):
    client = await gateway(ECHO)
    plain = await client.get("/ui/js/chat.js", headers={"Accept-Encoding": "identity"})
    packed = await client.get(
        "/ui/js/chat.js", headers={"Accept-Encoding": "gzip, deflate"}, auto_decompress=False
    )
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == "Accept-Encoding"
    body = await packed.read()
    assert len(body) < int(plain.headers["Content-Length"])
    assert gzip.decompress(body) == await plain.read()
    # Each representation has its own tag, so no cache confuses them.
    assert packed.headers["ETag"] != plain.headers["ETag"]


async def test_an_unknown_file_is_a_404_in_the_error_envelope(gateway):
    client = await gateway(ECHO)
    response = await client.get("/ui/js/missing.js")
    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "not_found" and "/ui/js/missing.js" in error["message"]


async def test_the_page_can_be_turned_off_or_kept_off_the_root(gateway):
    off = await gateway({**ECHO, "server": {"frontends": {"webui": {"enabled": False}}}})
    for path in ("/", "/ui/", "/ui/js/main.js"):
        assert (await off.get(path)).status == 404, path
    under_ui = await gateway({**ECHO, "server": {"frontends": {"webui": {"at_root": False}}}})
    assert (await under_ui.get("/")).status == 404
    assert (await under_ui.get("/ui/")).status == 200


async def test_a_misspelt_option_stops_startup_naming_it(gateway):
    with pytest.raises(Exception, match="at_rot"):
        await gateway({**ECHO, "server": {"frontends": {"webui": {"at_rot": False}}}})


async def test_the_page_loads_without_a_key_and_the_api_still_needs_one(gateway, monkeypatch):
    monkeypatch.setenv("WEBUI_HTTP_KEYS", "secret")
    client = await gateway({**ECHO, "server": {"api_keys_env": "WEBUI_HTTP_KEYS"}})
    # The page and its files hold no data: they load so that the page can ask for a key.
    for path in ("/", "/ui/", "/ui/js/api.js", "/ui/vendor/marked-18.3.0.esm.js"):
        assert (await client.get(path)).status == 200, path
    refused = await client.get("/v1/models")
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "invalid_api_key"
    # Only the page's own files are public, not every path under /ui/.
    assert (await client.get("/ui/js/missing.js")).status == 401
    allowed = await client.get("/v1/models", headers={"Authorization": "Bearer secret"})
    assert allowed.status == 200


async def test_the_root_is_the_page_even_beside_the_prompt_in_the_path_route(gateway):
    pollinations = pytest.importorskip("moe_pollinations.testing")
    fake = await pollinations.FakePollinations().start()
    try:
        options = {**fake.options(), "token_env": None, "referrer_env": None}
        config = {
            "experts": {
                "openai-fast": {"kind": "pollinations", "refresh_listing": False, **options}
            },
            "server": {"frontends": {"pollinations": {"enabled": True}}, "access_log": False},
        }
        client = await gateway(config)
        root = await client.get("/")
        assert root.status == 200 and root.content_type == "text/html"
        assert (await client.get("/ui/app.css")).content_type == "text/css"
        # Any other path is still a prompt.
        prompt = await client.get("/What%20is%20a%20star")
        assert prompt.status == 200 and prompt.content_type == "text/plain"
        assert await prompt.text() == "openai-fast says: What is a star"
    finally:
        await fake.close()


def test_the_first_load_fits_in_300_kilobytes_even_uncompressed():
    assets = load_assets()
    # Everything the page can load; licences and notes are never requested by it.
    loaded = [a for path, a in assets.items() if not path.endswith((".txt", ".md"))]
    assert sum(len(asset.body) for asset in loaded) < 300_000
