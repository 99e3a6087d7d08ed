"""The Responses API and Anthropic's Messages API for a routed model: a
second `parlance serve` whose `[gateway]` sends the model to the first one
over its OpenAI-compatible chat API (an `openai` backend). Each request is
translated to chat by the gateway side (docs/GATEWAY.md says why) and
answered, streamed or whole, in the endpoint's own shape — a stream
relayed chunk by chunk as the upstream sends it, not fetched whole and
replayed; the routed response is stored and chained on the gateway side,
and its ledger row names the endpoint and the upstream backend.
"""

from __future__ import annotations

import sqlite3
import time

import anthropic
import openai

MAX = 16


def test_routed_model_answers_responses_and_messages(server, model, serve_with, tmp_path):
    config = tmp_path / "parlance.toml"
    config.write_text(
        "[[gateway.models]]\n"
        'name = "remote-chat"\n'
        "[[gateway.models.backends]]\n"
        'id = "upstream"\n'
        'kind = "openai"\n'
        f'base_url = "{server.root}/v1"\n'
        f'model = "{model}"\n'
        'api_key = "sk-test"\n'
    )
    gateway = serve_with("--config", str(config))
    client = openai.OpenAI(base_url=f"{gateway.root}/v1", api_key="sk-test", max_retries=0)

    first = client.responses.create(model="remote-chat", input="My name is Ada.", max_output_tokens=MAX)
    assert first.model == "remote-chat"
    assert first.output[0].type == "message" and first.output_text
    assert first.usage.output_tokens > 0
    second = client.responses.create(
        model="remote-chat", previous_response_id=first.id, input="My name?", max_output_tokens=MAX
    )
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens

    # Streamed from the upstream chunk by chunk: the upstream's tokens
    # arrive as many text deltas (a whole answer replayed would be one),
    # between `response.created` and the end.
    kinds, deltas = [], []
    with client.responses.stream(
        model="remote-chat",
        input="Tell me a long story about a cat.",
        temperature=0,
        max_output_tokens=MAX,
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        # The story outruns MAX tokens: it ends `response.incomplete`,
        # whose response is the final one.
        final = event.response
    assert kinds[0] == "response.created" and kinds[1] == "response.in_progress"
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert final.usage.output_tokens >= 2
    assert len(deltas) > 1, kinds
    assert "".join(deltas) == final.output_text
    assert final.output_text == client.responses.retrieve(final.id).output_text

    claude = anthropic.Anthropic(base_url=gateway.root, api_key="sk-test", max_retries=0)
    message = claude.messages.create(
        model="remote-chat", max_tokens=MAX, messages=[{"role": "user", "content": "Hi."}]
    )
    assert message.content[0].text and message.usage.output_tokens > 0
    texts = []
    with claude.messages.stream(
        model="remote-chat",
        max_tokens=MAX,
        messages=[{"role": "user", "content": "Tell me a long story about a cat."}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                texts.append(event.delta.text)
        streamed = stream.get_final_message()
    assert streamed.usage.output_tokens >= 2
    assert len(texts) > 1
    assert "".join(texts) == streamed.content[0].text

    # A stream's row is written as its last events go out, by the ledger
    # writer: poll for it (with a deadline) rather than read it once.
    def rows():
        with sqlite3.connect(f"{gateway.data_dir}/parlance.db") as conn:
            return conn.execute(
                "SELECT endpoint, backend, completion_tokens FROM usage_ledger ORDER BY id"
            ).fetchall()

    deadline = time.monotonic() + 30
    while len(rows()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = rows()
    assert [r[0] for r in rows] == ["/v1/responses"] * 3 + ["/v1/messages"] * 2
    assert {r[1] for r in rows} == {"upstream"}
    assert rows[0][2] == first.usage.output_tokens
