"""Anthropic's Messages API end to end, with the official `anthropic` SDK
against the real `parlance serve`: `messages.create` and `messages.stream`
(Anthropic's event sequence, assembled by the SDK), a tool call and its
result, `count_tokens`, errors in Anthropic's shape, the key in `x-api-key`,
and the ledger equal to the usage the client was told.
"""

from __future__ import annotations

import sqlite3
import urllib.request

import anthropic
import openai
import pytest

REQUEST_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def claude(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.root, api_key="sk-test", max_retries=0, timeout=REQUEST_TIMEOUT_S
    )


def ledger_last(server) -> tuple:
    with sqlite3.connect(f"{server.data_dir}/parlance.db") as conn:
        return conn.execute(
            "SELECT prompt_tokens, cached_tokens, completion_tokens, status, endpoint "
            "FROM usage_ledger ORDER BY id DESC LIMIT 1"
        ).fetchone()


def ledger_count(server) -> int:
    with sqlite3.connect(f"{server.data_dir}/parlance.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM usage_ledger").fetchone()[0]


def test_create_answers_text_and_bills_it(claude, model, server):
    message = claude.messages.create(
        model=model,
        max_tokens=16,
        system="You are brief.",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 16
    prompt, cached, completion, status, endpoint = ledger_last(server)
    assert endpoint == "/v1/messages"
    # Anthropic counts cache reads apart from input_tokens.
    assert prompt == message.usage.input_tokens + message.usage.cache_read_input_tokens
    assert cached == message.usage.cache_read_input_tokens
    assert completion == message.usage.output_tokens
    assert status == "ok"


def test_stream_sends_anthropics_event_sequence(claude, model):
    with claude.messages.stream(
        model=model,
        max_tokens=200,
        # Greedy, with room to finish (this SDK's stream() takes no
        # `temperature` argument).
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "Say OK."}],
    ) as stream:
        kinds = []
        text = []
        for event in stream:
            kinds.append(event.type)
            if event.type == "text":
                text.append(event.text)
        final = stream.get_final_message()
    raw = [k for k in kinds if k not in ("text",)]
    assert raw[0] == "message_start"
    assert raw[1] == "content_block_start"
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(raw[2:-3]) <= {"content_block_delta"}
    assert final.content[0].text == "".join(text)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


ADD_TOOL = {
    "name": "add",
    "description": "Adds two integers.",
    "input_schema": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


def test_tool_call_and_result(claude, model):
    first = claude.messages.create(
        model=model,
        max_tokens=200,
        # This SDK's methods take no `temperature` argument.
        extra_body={"temperature": 0},
        tools=[ADD_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "What is 2 + 3?"}],
    )
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert uses and uses[0].name == "add"
    assert isinstance(uses[0].input["a"], int)
    second = claude.messages.create(
        model=model,
        max_tokens=16,
        tools=[ADD_TOOL],
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "5"}],
            },
        ],
    )
    assert second.content[0].type == "text"


def test_streamed_tool_call(claude, model):
    with claude.messages.stream(
        model=model,
        max_tokens=200,
        extra_body={"temperature": 0},
        tools=[ADD_TOOL],
        tool_choice={"type": "tool", "name": "add", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Add 4 and 5."}],
    ) as stream:
        final = stream.get_final_message()
    use = [block for block in final.content if block.type == "tool_use"][0]
    assert use.name == "add" and set(use.input) >= {"a", "b"}
    assert final.stop_reason == "tool_use"


def test_count_tokens(claude, model):
    counted = claude.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert counted.input_tokens > 0
    message = claude.messages.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert counted.input_tokens == (
        message.usage.input_tokens + message.usage.cache_read_input_tokens
    )


def test_errors_take_anthropics_shape_and_bill_nothing(claude, model, server):
    before = ledger_count(server)
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(
            model=model,
            max_tokens=16,
            messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}],
        )
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0].type" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as err:
        claude.messages.create(
            model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(
            model=model,
            max_tokens=16,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}],
                }
            ],
        )
    assert ledger_count(server) == before


def test_x_api_key_is_the_key(keyed_server, model):
    """With keys required, `x-api-key` authenticates like `Authorization`, and
    a wrong key is a 401 in Anthropic's shape."""
    srv, keys = keyed_server
    ok = anthropic.Anthropic(base_url=srv.root, api_key=keys["acme"], max_retries=0)
    message = ok.messages.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "Hi."}]
    )
    assert message.usage.output_tokens > 0
    bad = anthropic.Anthropic(base_url=srv.root, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "Hi."}])
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "authentication_error"
    request = urllib.request.Request(f"{srv.root}/v1/models", headers={"x-api-key": keys["acme"]})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200


def test_rate_limits_apply_and_answer_in_anthropics_shape(serve_with, model):
    srv = serve_with("--rpm", "2", "--tpm", "100000")
    claude = anthropic.Anthropic(base_url=srv.root, api_key="sk-test", max_retries=0)
    responses = openai.OpenAI(base_url=f"{srv.root}/v1", api_key="sk-test", max_retries=0)
    claude.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "Hi."}])
    responses.responses.create(model=model, input="Hi.", max_output_tokens=16)
    with pytest.raises(anthropic.RateLimitError) as err:
        claude.messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "Hi."}]
        )
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "rate_limit_error"
    assert err.value.response.headers.get("retry-after")
    with pytest.raises(openai.RateLimitError):
        responses.responses.create(model=model, input="Hi.", max_output_tokens=16)


def test_a_stop_sequence_is_reported_by_name(claude, model):
    """The engine says which stop string ended the answer: Anthropic's
    `stop_reason: "stop_sequence"` with `stop_sequence` naming it, whole and
    streamed; an answer no stop string ended keeps `stop_sequence: null`."""
    # Greedy, so every run writes the same text (the SDK's `stream` takes
    # no `temperature`: it goes in the body).
    ask = dict(
        model=model,
        max_tokens=40,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "List five fruits, one per line."}],
    )
    free = claude.messages.create(**ask)
    text = free.content[0].text
    assert free.stop_sequence is None and free.stop_reason in ("end_turn", "max_tokens")
    words = [w for w in text.split() if len(w) >= 3]
    assert len(words) >= 2, text
    # A word after the start, never matched by an earlier part of the text
    # ("zzz-never" never matches at all).
    stop = words[1]
    stops = ["zzz-never", stop]

    stopped = claude.messages.create(**ask, stop_sequences=stops)
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == stop
    assert stopped.content[0].text == text[: text.index(stop)]

    with claude.messages.stream(**ask, stop_sequences=stops) as stream:
        deltas = [e for e in stream if e.type == "message_delta"]
        streamed = stream.get_final_message()
    assert deltas[-1].delta.stop_reason == "stop_sequence"
    assert deltas[-1].delta.stop_sequence == stop
    assert streamed.stop_sequence == stop and streamed.stop_reason == "stop_sequence"
    assert streamed.content[0].text == text[: text.index(stop)]
