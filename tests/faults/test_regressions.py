"""The smallest inputs with which the fuzz and slow-body suites found a 5xx, as plain tests that
say what a client gets instead."""

from __future__ import annotations

import pytest

from tests.faults.fuzzgateway import PLUGINS, fuzz_config


async def test_an_ab_test_past_64_bits_is_refused_and_every_reader_still_answers(gateway, tmp_path):
    client = await gateway(fuzz_config(tmp_path), plugins=PLUGINS)
    spec = {"expert_a": "echo", "expert_b": "other", "min_samples": 2**100}
    response = await client.post("/v1/ab-tests", json=spec)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "min_samples"
    for path in ("/v1/ab-tests", "/v1/routing/stats", "/-/stats"):
        assert (await client.get(path)).status == 200, path


async def test_process_embeds_with_an_expert_that_embeds(gateway, tmp_path):
    client = await gateway(fuzz_config(tmp_path), plugins=PLUGINS)
    body = {"text": "hello", "task": "embed", "options": {"force_expert": "vectors"}}
    response = await client.post("/process", json=body)
    assert response.status == 200
    vector = (await response.json())["result"]
    assert len(vector) == 8 and abs(sum(x * x for x in vector) - 1) < 1e-9


@pytest.mark.parametrize("options", [{}, {"force_expert": "echo"}])
async def test_asking_a_chat_expert_for_a_vector_is_the_callers_400(gateway, tmp_path, options):
    client = await gateway(fuzz_config(tmp_path), plugins=PLUGINS)
    body = {"text": "hello", "task": "embed", "options": options}
    response = await client.post("/process", json=body)
    assert response.status == 400, await response.text()


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="\x1f"\r\n\r\n'
        b"plain text\r\n--b--\r\n",
        b"--b\r\nC",
    ],
    ids=["control-character-in-filename", "cut-inside-part-headers"],
)
async def test_an_upload_with_unreadable_part_headers_is_a_400(gateway, tmp_path, body):
    client = await gateway(fuzz_config(tmp_path), plugins=PLUGINS)
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    response = await client.post("/v1/files", data=body, headers=headers)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["message"].startswith("The multipart body")
