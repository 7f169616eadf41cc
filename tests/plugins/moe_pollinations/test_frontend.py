"""``GET /{prompt}``: plain text with MoE headers, or the picture itself; never in the way of
another frontend's routes, whatever order the frontends are mounted in."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from moe_pollinations.frontend import PromptFrontend, PromptFrontendOptions
from moe_pollinations.media import jpeg_size, mp3_frames
from moe_pollinations.testing import ModelBehaviour
from tests.plugins.moe_pollinations.conftest import full_config


async def test_prompt_in_the_path_answers_plain_text_with_headers(
    gateway, fake, expert_options, connection
):
    client = await gateway(full_config(expert_options, connection))
    response = await client.get("/What%20is%20a%20neutron%20star?seed=3&temperature=0.1")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "openai-fast says: What is a neutron star"
    assert response.headers["X-MoE-Models"] == "openai-fast"
    assert response.headers["X-MoE-Strategy"] == "single"
    assert float(response.headers["X-MoE-Latency"]) >= 0
    sent = fake.calls("openai-fast")[0].body
    assert sent["seed"] == 3 and sent["temperature"] == 0.1


async def test_the_prompt_route_is_mounted_only_where_the_config_enables_it(
    gateway, fake, expert_options, connection
):
    config = full_config(expert_options, connection)
    del config["server"]
    client = await gateway(config)
    response = await client.get("/What%20is%20a%20neutron%20star")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    assert not fake.calls("openai-fast")


async def test_format_image_answers_the_picture_itself(gateway, expert_options, connection):
    client = await gateway(full_config(expert_options, connection))
    response = await client.get("/a%20lighthouse%20at%20dusk?format=image&width=512&height=256")
    assert response.status == 200
    assert response.content_type == "image/jpeg"
    assert jpeg_size(await response.read()) == (512, 256)
    assert response.headers["X-MoE-Models"] == "flux"
    assert response.headers["X-MoE-Strategy"] == "multimodal"


async def test_format_audio_answers_the_speech_itself(gateway, fake, expert_options, connection):
    client = await gateway(full_config(expert_options, connection))
    response = await client.get("/Good%20morning%20everyone?format=audio&voice=echo")
    assert response.status == 200
    assert response.content_type == "audio/mpeg"
    assert mp3_frames(await response.read()) > 0
    assert response.headers["X-MoE-Models"] == "openai-audio"
    assert fake.calls("openai-audio")[0].body["audio"]["voice"] == "echo"


async def test_format_image_with_every_image_model_down_is_a_clear_error(
    gateway, fake, expert_options, connection
):
    fake.behaviour["flux"] = fake.behaviour["turbo"] = ModelBehaviour(status=400)
    client = await gateway(full_config(expert_options, connection))
    response = await client.get("/a%20cat?format=image")
    assert response.status == 502
    assert "every modality failed" in (await response.json())["error"]["message"]


async def test_bad_query_parameters_are_400s(gateway, expert_options, connection):
    client = await gateway(full_config(expert_options, connection))
    for query, param in (("format=gif", "format"), ("seed=abc", "seed"), ("top_p=x", "top_p")):
        response = await client.get(f"/hello?{query}")
        assert response.status == 400
        assert (await response.json())["error"]["param"] == param


async def test_other_frontends_routes_are_never_shadowed(gateway, expert_options, connection):
    client = await gateway(full_config(expert_options, connection))
    models = await client.get("/v1/models")
    assert models.content_type == "application/json"
    assert "flux" in [m["id"] for m in (await models.json())["data"]]
    assert (await client.get("/health")).content_type == "application/json"
    assert "pollinations" in [p["name"] for p in await (await client.get("/-/plugins")).json()]
    # A route that exists for another method stays a 405, not a prompt.
    assert (await client.get("/v1/chat/completions")).status == 405
    assert (await client.get("/predict")).status == 405
    # Unknown API paths stay 404s in the error envelope.
    for path in ("/v1/nothing", "/-/nothing"):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"
    # The root is the web page (moe-webui), not a prompt.
    assert (await client.get("/")).content_type == "text/html"


async def test_mounted_first_it_still_yields_to_routes_added_later():
    app = web.Application()
    PromptFrontend("pollinations", PromptFrontendOptions()).setup(app)

    async def later(request: web.Request) -> web.Response:
        return web.Response(text="the later route")

    app.router.add_get("/later", later)
    app.router.add_get("/also/{anything}", later)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert await (await client.get("/later")).text() == "the later route"
        assert await (await client.get("/also/x")).text() == "the later route"
    finally:
        await client.close()


async def test_the_prompt_route_needs_the_api_key_when_keys_are_set(
    gateway, expert_options, connection, monkeypatch
):
    monkeypatch.setenv("MOE_TEST_KEYS", "k1")
    config = full_config(expert_options, connection)
    config["server"]["api_keys_env"] = "MOE_TEST_KEYS"
    client = await gateway(config)
    assert (await client.get("/hello")).status == 401
    response = await client.get("/hello", headers={"Authorization": "Bearer k1"})
    assert response.status == 200
