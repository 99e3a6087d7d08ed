"""Moderation metering and routed embeddings/moderation, through the official
`openai` SDK against real `parlance serve` processes:

- every moderation request writes a ledger row (endpoint `/v1/moderations`,
  the model asked for, the tokens the classifier read from the embedding
  model's own tokenizer, cost zero by default), so
  `/v1/organization/usage/moderations` counts exactly what was sent;
- a second `parlance serve` whose `[gateway]` routes an embedding model and
  `omni-moderation-latest` to the first over `openai` backends (the first
  backend of each is dead, so the answer comes by failover), metered with
  the upstream's usage and named after the backend that served.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import urllib.request

import openai
import pytest

from test_embeddings import EMBEDDING_MODEL, emb_server  # noqa: F401  (fixture)

TEXTS = ["I'm going to end my life tonight.", "How do I kill a stuck process on Linux?"]
ONE = "Have a lovely day at the beach!"


def _usage(root: str, kind: str, start: int, **extra) -> list[dict]:
    query = f"start_time={start}&bucket_width=1d" + "".join(f"&{k}={v}" for k, v in extra.items())
    with urllib.request.urlopen(f"{root}/v1/organization/usage/{kind}?{query}", timeout=60) as resp:
        page = json.loads(resp.read())
    return [r for b in page["data"] for r in b["results"]]


def _ledger(data_dir: str, endpoint: str) -> list[tuple]:
    with sqlite3.connect(f"{data_dir}/parlance.db") as conn:
        return conn.execute(
            "SELECT model, backend, prompt_tokens, completion_tokens, cost, status "
            "FROM usage_ledger WHERE endpoint = ? ORDER BY id",
            (endpoint,),
        ).fetchall()


def _wait_rows(data_dir: str, endpoint: str, n: int) -> list[tuple]:
    # Settlements are written just after the answer: poll with a deadline.
    deadline = time.monotonic() + 30
    while True:
        rows = _ledger(data_dir, endpoint)
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, f"only {len(rows)} {endpoint} rows: {rows}"
        time.sleep(0.05)


def test_moderation_is_metered_and_counted_in_usage(emb_server):  # noqa: F811
    client = openai.OpenAI(base_url=f"{emb_server.root}/v1", api_key="sk-none", max_retries=0)
    start = int(time.time()) - 60
    before = len(_ledger(emb_server.data_dir, "/v1/moderations"))
    first = client.moderations.create(input=TEXTS)
    second = client.moderations.create(model="text-moderation-latest", input=ONE)
    assert len(first.results) == 2 and len(second.results) == 1
    # The classifier reads the embedding model's tokens: the embeddings
    # endpoint reports the same count for the same texts.
    tokens_first = client.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS,
                                            encoding_format="float").usage.prompt_tokens
    tokens_second = client.embeddings.create(model=EMBEDDING_MODEL, input=ONE,
                                             encoding_format="float").usage.prompt_tokens
    rows = _wait_rows(emb_server.data_dir, "/v1/moderations", before + 2)[before:]
    assert rows == [
        ("omni-moderation-latest", "local", tokens_first, 0, 0, "ok"),
        ("text-moderation-latest", "local", tokens_second, 0, 0, "ok"),
    ]
    # Other test modules share this server: compare the ledger with usage.
    all_rows = _ledger(emb_server.data_dir, "/v1/moderations")
    results = _usage(emb_server.root, "moderations", start, group_by="model")
    by_model = {r["model"]: r for r in results}
    for model in ("omni-moderation-latest", "text-moderation-latest"):
        mine = [r for r in all_rows if r[0] == model]
        assert by_model[model]["object"] == "organization.usage.moderations.result"
        assert by_model[model]["num_model_requests"] == len(mine)
        assert by_model[model]["input_tokens"] == sum(r[2] for r in mine)
    # Moderation rows never count as embeddings or completions.
    assert not any(r.get("model", "").endswith("moderation-latest")
                   for kind in ("embeddings", "completions")
                   for r in _usage(emb_server.root, kind, start, group_by="model"))


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture
def gateway(emb_server, serve_with, tmp_path):  # noqa: F811
    config = tmp_path / "parlance.toml"
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    config.write_text(
        "[gateway.health]\nenabled = false\n"
        "[[gateway.models]]\n"
        'name = "remote-embed"\n'
        'aliases = ["text-embedding-3-small"]\n'
        "[[gateway.models.backends]]\n"
        f'id = "dead-embed"\nkind = "openai"\nbase_url = "{dead}"\n'
        f'model = "{EMBEDDING_MODEL}"\npriority = 0\n'
        "[[gateway.models.backends]]\n"
        f'id = "upstream-embed"\nkind = "openai"\nbase_url = "{emb_server.root}/v1"\n'
        f'model = "{EMBEDDING_MODEL}"\npriority = 1\n'
        "[[gateway.models]]\n"
        'name = "omni-moderation-latest"\n'
        "[[gateway.models.backends]]\n"
        f'id = "dead-mod"\nkind = "openai"\nbase_url = "{dead}"\npriority = 0\n'
        "[[gateway.models.backends]]\n"
        f'id = "upstream-mod"\nkind = "openai"\nbase_url = "{emb_server.root}/v1"\npriority = 1\n'
    )
    return serve_with("--config", str(config))


def test_gateway_routes_embeddings_and_moderation_with_failover(emb_server, gateway):  # noqa: F811
    direct = openai.OpenAI(base_url=f"{emb_server.root}/v1", api_key="sk-none", max_retries=0)
    routed = openai.OpenAI(base_url=f"{gateway.root}/v1", api_key="sk-none", max_retries=0)

    texts = ["A man is eating food.", "The stock market fell sharply on Monday."]
    want = direct.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    got = routed.embeddings.create(model="remote-embed", input=texts, encoding_format="float")
    assert got.model == "remote-embed"
    assert got.usage.prompt_tokens == want.usage.prompt_tokens
    for g, w in zip(got.data, want.data):
        assert _cos(g.embedding, w.embedding) > 0.99999
    # An alias, base64 (the SDK decodes it), token ids.
    b64 = routed.embeddings.create(model="text-embedding-3-small", input=texts[0])
    assert _cos(b64.data[0].embedding, want.data[0].embedding) > 0.99999
    ids = routed.embeddings.create(model="remote-embed", input=[[1037, 2158]],
                                   encoding_format="float")
    assert len(ids.data) == 1 and ids.usage.prompt_tokens == 4
    # The upstream's own 400 comes back naming its parameter.
    with pytest.raises(openai.BadRequestError) as err:
        routed.embeddings.create(model="remote-embed", input="x", dimensions=8)
    assert err.value.body["param"] == "dimensions"
    # A chat-only local model does not embed.
    with pytest.raises(openai.NotFoundError):
        routed.embeddings.create(model="no-such-embedder", input="x")

    mod_direct = direct.moderations.create(input=TEXTS)
    mod_routed = routed.moderations.create(input=TEXTS)
    assert [r.flagged for r in mod_routed.results] == [r.flagged for r in mod_direct.results]
    assert mod_routed.results[0].flagged and not mod_routed.results[1].flagged

    rows = _wait_rows(gateway.data_dir, "/v1/embeddings", 3)
    assert [(r[0], r[1], r[5]) for r in rows] == [("remote-embed", "upstream-embed", "ok")] * 3
    assert rows[0][2] == want.usage.prompt_tokens and rows[2][2] == 4
    assert all(r[4] > 0 for r in rows)  # embeddings are priced
    (mod,) = _wait_rows(gateway.data_dir, "/v1/moderations", 1)
    assert mod[:2] == ("omni-moderation-latest", "upstream-mod") and mod[4] == 0
    # The gateway has no embedding model: its tokens are estimated.
    assert mod[2] > 0
    start = int(time.time()) - 60
    (bucket,) = _usage(gateway.root, "moderations", start)
    assert bucket["num_model_requests"] == 1 and bucket["input_tokens"] == mod[2]
