"""The files API, as the official SDK and the short routes use it, and files referenced in chat
messages: a PDF answered from its text, names that cannot escape the folder, size and type
limits, and keys that cannot read each other's files."""

from __future__ import annotations

import asyncio
import base64
import json

import openai
import pytest
from aiohttp import FormData

from moe_core import ConfigError
from moe_core.testing import make_moe
from tests.plugins.moe_context.conftest import text_expert
from tests.plugins.moe_context.samples import pdf_with_text, png

INVOICE = pdf_with_text("Invoice 4217", "Total due: 1,234.50 EUR (by 31 March)")
KEYS = {"TEST_MOE_KEYS": "key-a,key-b"}


def with_files(tmp_path, base_url: str, keys: bool = False, **files) -> dict:
    config = {
        "experts": {"chat": text_expert(base_url)},
        "preparers": {"files": {"kind": "read-files"}},
        "files": {"dir": str(tmp_path / "files"), **files},
    }
    if keys:
        config["server"] = {"api_keys_env": "TEST_MOE_KEYS"}
    return config


def sdk(client, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=key, max_retries=0)


def file_question(file_id: str, text: str = "What is the total due?") -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "file", "file": {"file_id": file_id}},
            ],
        }
    ]


def upload_form(name: str, data: bytes, purpose: str | None = "user_data") -> FormData:
    form = FormData(quote_fields=False)  # the name as curl and the SDKs send it
    if purpose is not None:
        form.add_field("purpose", purpose)
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return form


async def test_a_pdf_uploaded_with_the_sdk_answers_a_chat_question(gateway, openai_fake, tmp_path):
    upstream, base_url = await openai_fake()  # answers "echo: <the last message>"
    client = sdk(await gateway(with_files(tmp_path, base_url)))
    uploaded = await client.files.create(
        file=("invoice.pdf", INVOICE, "application/pdf"), purpose="user_data"
    )
    assert uploaded.id.startswith("file-") and uploaded.filename == "invoice.pdf"
    assert uploaded.bytes == len(INVOICE) and uploaded.purpose == "user_data"

    answer = await client.chat.completions.create(model="auto", messages=file_question(uploaded.id))
    text = answer.choices[0].message.content
    assert text.startswith("echo: What is the total due?")
    assert f"[File 'invoice.pdf' ({uploaded.id}), 1 page(s)]" in text
    assert "Total due: 1,234.50 EUR (by 31 March)" in text
    assert '"file_id"' not in json.dumps(upstream.requests[0])  # the upstream got text
    notes = answer.model_extra["moe_metadata"]["notes"]
    assert f"files: 'invoice.pdf' ({uploaded.id}) given as text (" in notes[0]

    assert (await client.files.retrieve(uploaded.id)).filename == "invoice.pdf"
    assert [f.id for f in (await client.files.list()).data] == [uploaded.id]
    assert (await client.files.content(uploaded.id)).content == INVOICE
    deleted = await client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        await client.files.retrieve(uploaded.id)
    assert not list((tmp_path / "files" / "blobs").iterdir())


async def test_the_short_routes_upload_list_and_delete_by_name(gateway, tmp_path):
    client = await gateway(with_files(tmp_path, "http://127.0.0.1:1/v1"))
    for text in ("first", "second"):
        response = await client.post(
            "/files/upload", data=upload_form("notes.md", text.encode(), None)
        )
        assert response.status == 200
        assert (await response.json())["purpose"] == "user_data"
    listed = await (await client.get("/files/list")).json()
    assert [f["filename"] for f in listed["data"]] == ["notes.md", "notes.md"]
    assert listed["object"] == "list" and listed["has_more"] is False
    response = await client.delete("/files/notes.md")
    body = await response.json()
    assert body["deleted"] is True and len(body["ids"]) == 2
    assert (await (await client.get("/files/list")).json())["data"] == []
    response = await client.delete("/files/notes.md")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_a_name_cannot_escape_the_folder(gateway, tmp_path):
    client = await gateway(with_files(tmp_path, "http://127.0.0.1:1/v1"))
    response = await client.post(
        "/v1/files", data=upload_form("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n")
    )
    assert response.status == 200, await response.text()
    stored = await response.json()
    assert stored["filename"] == "passwd"
    assert not (tmp_path / "etc").exists() and not (tmp_path / "files" / "etc").exists()
    blobs = list((tmp_path / "files" / "blobs").iterdir())
    assert [blob.name for blob in blobs] == [stored["id"]]
    for method, path in [
        ("GET", "/v1/files/..%2F..%2Fetc%2Fpasswd/content"),
        ("GET", "/v1/files/../../etc/passwd"),
        ("DELETE", "/files/..%2F..%2Fetc%2Fpasswd"),
    ]:
        response = await client.request(method, path)
        assert response.status == 404, path
        assert "error" in await response.json()
    response = await client.delete("/files/passwd")  # by its stored name, it is the caller's
    assert (await response.json())["ids"] == [stored["id"]]


async def test_oversized_uploads_get_a_413(gateway, tmp_path):
    client = await gateway(with_files(tmp_path, "http://127.0.0.1:1/v1", max_bytes=1000))
    for size in (1500, 200_000):  # caught while reading; refused from Content-Length
        response = await client.post("/v1/files", data=upload_form("big.txt", b"x" * size))
        assert response.status == 413
        error = (await response.json())["error"]
        assert error["code"] == "file_too_large" and "1,000 bytes" in error["message"]
    assert not list((tmp_path / "files" / "incoming").iterdir())
    assert (await (await client.get("/v1/files")).json())["data"] == []


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("fake.pdf", b"just text", "'fake.pdf' is not a PDF"),
        ("data.json", b"{not json", "'data.json' is not valid JSON"),
        ("photo.png", INVOICE, "'photo.png' is not a PNG image"),
        ("tool.exe", b"MZ", "files of type .exe are not accepted"),
        ("notes.txt", b"\xff\xfe\x00binary", "'notes.txt' is not UTF-8 text"),
    ],
)
async def test_content_must_be_what_its_name_says(gateway, tmp_path, name, data, message):
    client = await gateway(with_files(tmp_path, "http://127.0.0.1:1/v1"))
    response = await client.post("/v1/files", data=upload_form(name, data))
    assert response.status == 415
    error = (await response.json())["error"]
    assert error["code"] == "unsupported_file" and message in error["message"]


async def test_bad_upload_requests_are_400s(gateway, tmp_path):
    client = await gateway(with_files(tmp_path, "http://127.0.0.1:1/v1"))
    response = await client.post("/v1/files", data=upload_form("a.txt", b"hi", purpose=None))
    assert response.status == 400 and (await response.json())["error"]["param"] == "purpose"
    response = await client.post("/v1/files", data=upload_form("a.txt", b"hi", purpose="fun"))
    assert response.status == 400 and "purpose must be one of" in await response.text()
    response = await client.post("/v1/files", json={"file": "a.txt"})
    assert response.status == 415
    response = await client.get("/v1/files?limit=0")
    assert response.status == 400 and (await response.json())["error"]["param"] == "limit"


async def test_another_key_cannot_see_read_delete_or_chat_with_a_file(
    gateway, openai_fake, tmp_path, monkeypatch
):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    upstream, base_url = await openai_fake()
    server = await gateway(with_files(tmp_path, base_url, keys=True))
    owner, other = sdk(server, "key-a"), sdk(server, "key-b")
    uploaded = await owner.files.create(file=("invoice.pdf", INVOICE), purpose="user_data")

    assert (await other.files.list()).data == []
    for attempt in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError):
            await attempt(uploaded.id)
    with pytest.raises(openai.BadRequestError, match="does not exist .or belongs to another key"):
        await other.chat.completions.create(model="auto", messages=file_question(uploaded.id))
    assert upstream.requests == []
    response = await server.delete("/files/invoice.pdf", headers={"Authorization": "Bearer key-b"})
    assert response.status == 404

    answer = await owner.chat.completions.create(model="auto", messages=file_question(uploaded.id))
    assert "Total due: 1,234.50 EUR" in answer.choices[0].message.content
    assert [f.id for f in (await owner.files.list()).data] == [uploaded.id]
    database = (tmp_path / "files" / "files.sqlite3").read_bytes()
    assert b"key-a" not in database  # a hash of the key is stored, never the key


async def test_concurrent_uploads_never_pass_the_stores_limits(gateway, tmp_path):
    client = await gateway(with_files(tmp_path, "http://127.0.0.1:1/v1", max_files=3))
    responses = await asyncio.gather(
        *(client.post("/v1/files", data=upload_form(f"n{i}.txt", b"note")) for i in range(8))
    )
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] * 3 + [413] * 5
    errors = [await r.json() for r in responses if r.status == 413]
    assert all(e["error"]["code"] == "storage_full" for e in errors)
    assert len(list((tmp_path / "files" / "blobs").iterdir())) == 3


async def test_an_image_file_is_described_for_a_text_only_expert(gateway, openai_fake, tmp_path):
    _, base_url = await openai_fake()
    config = with_files(tmp_path, base_url)
    config["experts"]["facts"] = {"kind": "image-facts", "ocr": "off"}
    config["preparers"]["images"] = {"kind": "describe-images", "describer": "facts"}
    config["gate"] = {"kind": "fixed", "expert": "chat"}
    client = sdk(await gateway(config))
    uploaded = await client.files.create(
        file=("logo.png", png((30, 80, 220), size=(32, 32))), purpose="vision"
    )
    answer = await client.chat.completions.create(
        model="auto", messages=file_question(uploaded.id, "What colour is the logo?")
    )
    text = answer.choices[0].message.content
    assert "[Image 1, as described by facts: Image 1: a PNG image, 32x32 pixels" in text
    assert "Main colours: blue 100%" in text


async def test_a_file_given_inline_is_read_without_an_upload(gateway, openai_fake, tmp_path):
    _, base_url = await openai_fake()
    client = await gateway(with_files(tmp_path, base_url))
    inline = "data:application/pdf;base64," + base64.b64encode(INVOICE).decode()
    part = {"type": "file", "file": {"filename": "invoice.pdf", "file_data": inline}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Total?"}, part]}]
    body = await (await client.post("/v1/chat/completions", json={"messages": messages})).json()
    assert "Total due: 1,234.50 EUR" in body["choices"][0]["message"]["content"]
    bad = {"type": "file", "file": {"filename": "x.pdf", "file_data": "%%%"}}
    messages[0]["content"][1] = bad
    response = await client.post("/v1/chat/completions", json={"messages": messages})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "messages[0].content[1].file.file_data"


def test_files_must_be_read_before_images_are_described(tmp_path):
    config = {
        "experts": {"chat": {"kind": "echo"}, "facts": {"kind": "image-facts", "ocr": "off"}},
        "preparers": {
            "images": {"kind": "describe-images", "describer": "facts"},
            "files": {"kind": "read-files"},
        },
        "files": {"dir": str(tmp_path)},
    }
    with pytest.raises(ConfigError, match="preparers: list 'files' before 'images'"):
        make_moe(config)
