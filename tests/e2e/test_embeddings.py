"""POST /v1/embeddings through the official `openai` SDK against the real
binary serving all-MiniLM-L6-v2 on our own encoder: every input shape,
base64, the SDK's own decoding, usage from the model's tokenizer, and each
bad input answered with a 400 naming its parameter."""

from __future__ import annotations

import base64
import math
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import openai
import pytest

from conftest import Server, _binary, _data_dir, _die_with_parent, _make_client, _model

EMBEDDING_MODEL = "all-minilm-l6-v2"


def _embedding_folder() -> str:
    folder = _data_dir() / "models" / EMBEDDING_MODEL
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError(f"`parlance pull {EMBEDDING_MODEL}` first (looked in {folder})")
    return str(folder)


@pytest.fixture(scope="module")
def emb_server():
    with tempfile.TemporaryDirectory(prefix="parlance-e2e-emb-") as data_dir:
        config = Path(data_dir) / "parlance.toml"
        config.write_text(
            f'embedding_models = ["{_embedding_folder()}"]\n'
            '[embedding_aliases]\n"text-embedding-3-small" = "all-minilm-l6-v2"\n'
        )
        proc = subprocess.Popen(
            [_binary(), "serve", "--port", "0", "--model", _model(), "--threads", "2",
             "--data-dir", data_dir, "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        srv = Server(proc, data_dir)
        try:
            srv.wait_ready()
            yield srv
        finally:
            exited = srv.stop()
        assert exited is None, f"the server died: {srv.stderr_tail()}"


@pytest.fixture(scope="module", params=["loose", "strict"])
def emb_client(request, emb_server) -> openai.OpenAI:
    return _make_client(emb_server, strict=request.param == "strict")


def _norm(v):
    return math.sqrt(sum(x * x for x in v))


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (_norm(a) * _norm(b))


def test_one_string(emb_client):
    r = emb_client.embeddings.create(model=EMBEDDING_MODEL, input="A man is eating food.",
                                     encoding_format="float")
    assert r.object == "list" and r.model == EMBEDDING_MODEL
    assert len(r.data) == 1 and r.data[0].index == 0 and r.data[0].object == "embedding"
    assert len(r.data[0].embedding) == 384
    assert abs(_norm(r.data[0].embedding) - 1.0) < 1e-4
    # [CLS] a man is eating food . [SEP]
    assert r.usage.prompt_tokens == 8 and r.usage.total_tokens == 8


def test_every_input_shape_and_meaning(emb_client):
    texts = ["A man is eating food.", "A man is eating a piece of bread.",
             "The stock market fell sharply on Monday."]
    r = emb_client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    assert [d.index for d in r.data] == [0, 1, 2]
    v = [d.embedding for d in r.data]
    assert _cos(v[0], v[1]) > _cos(v[0], v[2]) + 0.3
    # The same text as token ids (without [CLS]/[SEP], which the server adds).
    ids = [1037, 2158, 2003, 5983, 2833, 1012]
    one = emb_client.embeddings.create(model=EMBEDDING_MODEL, input=ids, encoding_format="float")
    assert _cos(one.data[0].embedding, v[0]) > 0.99999
    many = emb_client.embeddings.create(model=EMBEDDING_MODEL, input=[ids, ids[:3]],
                                        encoding_format="float")
    assert len(many.data) == 2 and many.usage.prompt_tokens == 8 + 5


def test_base64_is_little_endian_f32_and_the_sdk_decodes_it(emb_client, request):
    text = "Embeddings map text to vectors."
    floats = emb_client.embeddings.create(model=EMBEDDING_MODEL, input=text,
                                          encoding_format="float").data[0].embedding
    raw = emb_client.embeddings.with_raw_response.create(
        model=EMBEDDING_MODEL, input=text, encoding_format="base64")
    b64 = raw.http_response.json()["data"][0]["embedding"]
    decoded = struct.unpack("<384f", base64.b64decode(b64))
    assert max(abs(a - b) for a, b in zip(decoded, floats)) < 1e-6
    # No encoding_format: the SDK asks for base64 and decodes it itself. Its
    # strict mode checks the answer against `List[float]` before decoding,
    # so it refuses OpenAI's base64 answer just the same (docs/EMBEDDINGS.md).
    if "strict" in request.node.callspec.id:
        with pytest.raises(openai.APIResponseValidationError):
            emb_client.embeddings.create(model=EMBEDDING_MODEL, input=text)
        return
    sdk = emb_client.embeddings.create(model=EMBEDDING_MODEL, input=text).data[0].embedding
    assert max(abs(a - b) for a, b in zip(sdk, floats)) < 1e-6


def test_an_alias_and_dimensions_at_the_models_size(emb_client):
    r = emb_client.embeddings.create(model="text-embedding-3-small", input="hi",
                                     dimensions=384, user="user-1", encoding_format="float")
    assert r.model == EMBEDDING_MODEL and len(r.data[0].embedding) == 384


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input[1]"),
        ({"input": "word " * 300}, "input"),
        ({"input": ["fine", "word " * 300]}, "input[1]"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": [999999]}, "input"),
        ({"input": "x", "dimensions": 64}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_bad_input_is_a_400_naming_its_param(emb_client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as err:
        emb_client.embeddings.create(model=EMBEDDING_MODEL, **kwargs)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param, err.value.body


def test_an_unknown_model_is_a_404(emb_client):
    with pytest.raises(openai.NotFoundError) as err:
        emb_client.embeddings.create(model="no-such-embedder", input="x")
    assert err.value.body["param"] == "model"


# --- POST /v1/moderations (the local classifier on the same embedding model)

CATEGORIES = {
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
}


def test_moderation_shape_and_verdicts(emb_client):
    r = emb_client.moderations.create(
        input=["I'm going to end my life tonight.", "How do I kill a stuck process on Linux?"])
    assert r.id.startswith("modr-") and r.model == "omni-moderation-latest"
    assert len(r.results) == 2
    for result in r.results:
        scores = result.category_scores.model_dump(by_alias=True)
        assert set(scores) == CATEGORIES
        assert all(0.0 <= s <= 1.0 for s in scores.values())
        applied = result.category_applied_input_types.model_dump(by_alias=True)
        assert set(applied) == CATEGORIES and all(v == ["text"] for v in applied.values())
    assert r.results[0].flagged and r.results[0].categories.self_harm_intent
    assert not r.results[1].flagged


def test_moderation_text_parts_and_models(emb_client):
    r = emb_client.moderations.create(
        model="text-moderation-latest",
        input=[{"type": "text", "text": "Have a lovely day!"}],
    )
    assert r.model == "text-moderation-latest" and len(r.results) == 1
    assert not r.results[0].flagged


def test_moderation_bad_input(emb_client):
    with pytest.raises(openai.BadRequestError) as err:
        emb_client.moderations.create(input=[])
    assert err.value.body["param"] == "input"


# --- usage: /v1/organization/usage/embeddings counts embeddings alone

def test_usage_embeddings_counts_only_embeddings():
    import json as _json
    import re as _re
    import time as _time
    import urllib.request as _request

    admin_key = "sk-admin-emb-e2e"
    with tempfile.TemporaryDirectory(prefix="parlance-e2e-emb-usage-") as data_dir:
        out = subprocess.run([_binary(), "--data-dir", data_dir, "keys", "create"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        key = _re.search(r"sk-[A-Za-z0-9_-]+", out.stdout + out.stderr).group(0)
        env = {**__import__("os").environ, "PARLANCE_ADMIN_KEY": admin_key}
        proc = subprocess.Popen(
            [_binary(), "--data-dir", data_dir, "serve", "--port", "0", "--model", _model(),
             "--threads", "1", "--embedding-model", _embedding_folder()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        srv = Server(proc, data_dir)
        try:
            srv.wait_ready()
            start = int(_time.time()) - 60
            client = openai.OpenAI(base_url=f"{srv.root}/v1", api_key=key, max_retries=0)
            r = client.embeddings.create(model=EMBEDDING_MODEL, input=["a b c", "hello"],
                                         encoding_format="float")
            assert r.usage.prompt_tokens == 8

            def usage(kind):
                req = _request.Request(
                    f"{srv.root}/v1/organization/usage/{kind}?start_time={start}&bucket_width=1d",
                    headers={"authorization": f"Bearer {admin_key}"})
                with _request.urlopen(req, timeout=60) as resp:
                    page = _json.loads(resp.read())
                return [res for b in page["data"] for res in b["results"]]

            # The ledger row is written once the answer is settled: wait for it.
            deadline = _time.monotonic() + 30
            while not usage("embeddings"):
                assert _time.monotonic() < deadline, "no embeddings usage recorded"
                _time.sleep(0.05)
            (row,) = usage("embeddings")
            assert row["object"] == "organization.usage.embeddings.result"
            assert row["input_tokens"] == 8 and row["num_model_requests"] == 1
            assert usage("completions") == []
            assert usage("moderations") == []
        finally:
            assert srv.stop() is None, srv.stderr_tail()
