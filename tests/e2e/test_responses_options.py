"""The Responses API's options beyond a plain turn, end to end with the
official `openai` SDK against the real `parlance serve`:

- `include: ["message.output_text.logprobs"]` (and `top_logprobs`): each
  output token's logprob on the text parts and the streamed deltas; the
  other documented values and unknown ones refused naming `include[i]`;
- `truncation: "auto"` drops the oldest input until the prompt fits the
  context, where `disabled` (the default) refuses it;
- `POST /v1/responses/input_tokens` counts a turn as it would be billed;
- `GET /v1/responses/{id}?stream=true` replays a stored response's events;
- a thinking model's reasoning as `reasoning` output items, streamed as
  `response.reasoning_text.delta` / `.done`, accepted back as input;
- a spent hard budget refuses a turn with 429 `insufficient_quota`, in
  OpenAI's shape, storing and billing nothing.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import openai
import pytest

from conftest import Server, _binary, _die_with_parent, _model

MAX = 16
LOGPROBS = "message.output_text.logprobs"


def test_include_logprobs_whole_and_streamed(loose_client, model):
    response = loose_client.responses.create(
        model=model,
        input="Say hello.",
        max_output_tokens=MAX,
        temperature=0,
        include=[LOGPROBS],
        top_logprobs=2,
    )
    part = response.output[0].content[0]
    assert part.logprobs, part
    assert len(part.logprobs) == response.usage.output_tokens or (
        # The end-of-turn token has no text.
        len(part.logprobs) == response.usage.output_tokens - 1
    )
    assert "".join(p.token for p in part.logprobs) == part.text
    assert all(len(p.top_logprobs) == 2 and p.logprob <= 0 for p in part.logprobs)

    deltas = []
    with loose_client.responses.stream(
        model=model, input="Say hello.", max_output_tokens=MAX, temperature=0, include=[LOGPROBS]
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event)
            if event.type == "response.output_text.done":
                done = event
        final = stream.get_final_response() if event.type == "response.completed" else event.response
    streamed = [p for d in deltas for p in d.logprobs]
    assert streamed and "".join(p.token for p in streamed) == final.output_text
    assert len(done.logprobs) == len(streamed)

    plain = loose_client.responses.create(model=model, input="Say hello.", max_output_tokens=MAX)
    assert plain.output[0].content[0].logprobs == []


@pytest.mark.parametrize(
    "include, fragment",
    [
        ([LOGPROBS, "reasoning.encrypted_content"], "reasoning.encrypted_content"),
        (["file_search_call.results"], "built-in tool"),
        (["no.such.value"], "Supported values"),
    ],
)
def test_include_refusals_name_the_entry(loose_client, model, include, fragment):
    with pytest.raises(openai.BadRequestError) as err:
        loose_client.responses.create(model=model, input="hi", include=include)
    assert err.value.body["param"] == f"include[{len(include) - 1}]"
    assert fragment in err.value.body["message"]


def test_truncation_auto_drops_the_oldest_input(loose_client, model):
    # ~10,000 tokens: more than the model's 8,192-token context.
    long = "word " * 10_000
    items = [
        {"role": "user", "content": long},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Say hi."},
    ]
    with pytest.raises(openai.BadRequestError) as err:
        loose_client.responses.create(model=model, input=items, max_output_tokens=MAX)
    assert err.value.body["code"] == "context_length_exceeded"
    response = loose_client.responses.create(
        model=model,
        input=items,
        instructions="Be brief.",
        max_output_tokens=MAX,
        truncation="auto",
    )
    assert response.truncation == "auto"
    assert response.output_text
    # The long message went; the instructions and the rest stayed.
    assert response.usage.input_tokens < 200
    counted = loose_client.responses.input_tokens.count(
        model=model, input=items, instructions="Be brief.", truncation="auto"
    )
    assert counted.input_tokens == response.usage.input_tokens


def test_input_tokens_counts_a_turn_as_it_is_billed(loose_client, model):
    first = loose_client.responses.create(
        model=model, input="My name is Ada.", instructions="Be brief.", max_output_tokens=MAX
    )
    counted = loose_client.responses.input_tokens.count(
        model=model, input="My name is Ada.", instructions="Be brief."
    )
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == first.usage.input_tokens
    chained = loose_client.responses.input_tokens.count(
        model=model, input="My name?", previous_response_id=first.id
    )
    second = loose_client.responses.create(
        model=model, input="My name?", previous_response_id=first.id, max_output_tokens=MAX
    )
    assert chained.input_tokens == second.usage.input_tokens
    # No model: the first one served.
    assert loose_client.responses.input_tokens.count(input="My name is Ada.").input_tokens > 0


def test_retrieve_stream_replays_a_stored_response(loose_client, model):
    # A closed schema: the call's arguments end by themselves (an open
    # `{"type": "object"}` let the model write until the context was full).
    tools = [{"type": "function", "name": "weather", "strict": True, "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"], "additionalProperties": False}}]
    response = loose_client.responses.create(
        model=model, input="Say hello.", max_output_tokens=MAX, temperature=0
    )
    events = list(loose_client.responses.retrieve(response.id, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == response.output_text
    assert events[-1].response.id == response.id
    later = list(loose_client.responses.retrieve(response.id, stream=True, starting_after=2))
    assert [e.sequence_number for e in later] == list(range(3, len(events)))

    called = loose_client.responses.create(
        model=model, input="Weather in Paris?", tools=tools, tool_choice="required",
        max_output_tokens=64,
    )
    replayed = list(loose_client.responses.retrieve(called.id, stream=True))
    done = [e for e in replayed if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == called.output[0].arguments
    with pytest.raises(openai.NotFoundError):
        list(loose_client.responses.retrieve("resp_doesnotexist", stream=True))
    # `include` on a retrieve is checked as on create.
    assert loose_client.responses.retrieve(response.id, include=[LOGPROBS]).id == response.id
    with pytest.raises(openai.BadRequestError) as err:
        loose_client.responses.retrieve(response.id, include=["reasoning.encrypted_content"])
    assert err.value.body["param"] == "include[0]"


def test_a_spent_budget_is_insufficient_quota():
    """A hard budget too small for the turn's worst case: 429
    `insufficient_quota` in OpenAI's error shape, through the SDK, whole
    and streamed; nothing stored, nothing billed."""
    with tempfile.TemporaryDirectory(prefix="parlance-e2e-quota-") as data_dir:
        def cli(*args: str) -> str:
            out = subprocess.run(
                [_binary(), "--data-dir", data_dir, *args],
                capture_output=True, text=True, timeout=120,
            )
            assert out.returncode == 0, out.stderr
            return out.stdout

        key = cli("keys", "create", "--org", "acme", "--project", "tight").strip()
        # One picodollar: no turn's worst case fits.
        cli("budget", "set", "--org", "acme", "--project", "tight", "--hard", "0.000000000001")
        proc = subprocess.Popen(
            [_binary(), "serve", "--port", "0", "--model", _model(), "--threads", "2",
             "--data-dir", data_dir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        server = Server(proc, data_dir)
        try:
            server.wait_ready()
            client = openai.OpenAI(base_url=f"{server.root}/v1", api_key=key, max_retries=0)
            model = client.models.list().data[0].id
            with pytest.raises(openai.RateLimitError) as err:
                client.responses.create(model=model, input="hi", max_output_tokens=MAX)
            assert err.value.status_code == 429
            assert err.value.code == "insufficient_quota"
            assert err.value.body["type"] == "insufficient_quota"
            assert err.value.body["message"]
            with pytest.raises(openai.RateLimitError) as streamed:
                with client.responses.stream(model=model, input="hi", max_output_tokens=MAX):
                    pass
            assert streamed.value.code == "insufficient_quota"
            with sqlite3.connect(f"{data_dir}/parlance.db") as conn:
                assert conn.execute("SELECT COUNT(*) FROM usage_ledger").fetchone()[0] == 0
                assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0
        finally:
            server.stop()


THINKING_TEMPLATE = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"


def _thinking_template() -> Path:
    folder = os.environ.get("PARLANCE_TEMPLATES_DIR") or str(
        Path.home() / ".cache/parlance-reference/llama.cpp/models/templates"
    )
    path = Path(folder) / THINKING_TEMPLATE
    if not path.is_file():
        if os.environ.get("PARLANCE_REQUIRE_VOCAB"):
            pytest.fail(f"no {THINKING_TEMPLATE} in {folder}: run scripts/reference/vocab_fixtures.sh")
        pytest.skip(f"no {THINKING_TEMPLATE} in {folder} (scripts/reference/vocab_fixtures.sh)")
    return path


def test_reasoning_items_whole_streamed_and_sent_back(serve_with):
    """SmolLM2 under DeepSeek-R1-Distill's template (its prompt ends with
    `<think>`, and SmolLM2 never closes it): the answer is reasoning, written
    as a `reasoning` item, whole and streamed, with `reasoning.effort`
    `high`; `none` turns thinking off (a message, no reasoning)."""
    srv = serve_with("--chat-template", str(_thinking_template()))
    client = openai.OpenAI(base_url=f"{srv.root}/v1", api_key="sk-test", max_retries=0)
    model = client.models.list().data[0].id
    think = {"effort": "high"}
    whole = client.responses.create(
        model=model, input="What is 2 + 2?", max_output_tokens=24, temperature=0, reasoning=think
    )
    kinds = [item.type for item in whole.output]
    assert kinds[0] == "reasoning", whole.output
    reasoning = whole.output[0]
    assert reasoning.id.startswith("rs_") and reasoning.summary == []
    assert reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text.strip()
    assert reasoning.content[0].text not in whole.output_text or not whole.output_text

    deltas, done, items = [], None, []
    with client.responses.stream(
        model=model, input="What is 2 + 2?", max_output_tokens=24, temperature=0, reasoning=think
    ) as stream:
        for event in stream:
            if event.type == "response.reasoning_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.reasoning_text.done":
                done = event
            elif event.type == "response.output_item.done":
                items.append(event.item)
    assert len(deltas) > 1 and done is not None
    assert "".join(deltas) == done.text == reasoning.content[0].text
    assert items[0].type == "reasoning" and items[0].content[0].text == done.text
    final = event.response
    assert final.output[0].type == "reasoning"

    replayed = list(client.responses.retrieve(whole.id, stream=True))
    assert "response.reasoning_text.delta" in [e.type for e in replayed]

    # Sent back (as the agents SDK does), the reasoning item is accepted and
    # left out of the prompt; chaining from a response with one works too.
    sent_back = client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "What is 2 + 2?"},
            whole.output[0].model_dump(exclude_none=True),
            {"role": "user", "content": "And 3 + 3?"},
        ],
        max_output_tokens=MAX,
        reasoning=think,
    )
    chained = client.responses.create(
        model=model,
        previous_response_id=whole.id,
        input="And 3 + 3?",
        max_output_tokens=MAX,
        reasoning=think,
    )
    assert sent_back.usage.input_tokens == chained.usage.input_tokens

    off = client.responses.create(
        model=model, input="What is 2 + 2?", max_output_tokens=MAX, reasoning={"effort": "none"}
    )
    assert [item.type for item in off.output] == ["message"] and off.output_text


def test_anthropic_thinking_blocks(serve_with):
    """The same thinking model on Anthropic's Messages API: `thinking`
    enabled writes the reasoning as a `thinking` block (streamed as
    `thinking_delta`s), sent back it is accepted; without `thinking` the
    reasoning stays out of the message; a budget below 1024 is refused."""
    import anthropic

    srv = serve_with("--chat-template", str(_thinking_template()))
    claude = anthropic.Anthropic(base_url=srv.root, api_key="sk-test", max_retries=0)
    model = openai.OpenAI(
        base_url=f"{srv.root}/v1", api_key="sk-test", max_retries=0
    ).models.list().data[0].id
    # SmolLM2 never closes `<think>`: a stop sequence ends its (greedy)
    # reasoning at its first colon (`max_tokens` must exceed the 1024-token
    # budget). The SDK's `stream` takes no `temperature`: it goes in the body.
    ask = dict(
        model=model,
        max_tokens=1100,
        stop_sequences=[":"],
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
    )
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = claude.messages.create(**ask, thinking=thinking)
    assert message.content[0].type == "thinking", message.content
    assert message.content[0].thinking.strip()
    assert message.stop_reason == "stop_sequence"

    deltas = []
    with claude.messages.stream(**ask, thinking=thinking) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                deltas.append(event.delta.thinking)
        streamed = stream.get_final_message()
    assert deltas and "".join(deltas) == streamed.content[0].thinking

    plain = claude.messages.create(**ask)
    assert all(block.type != "thinking" for block in plain.content)

    again = claude.messages.create(
        model=model,
        max_tokens=1100,
        stop_sequences=[":"],
        extra_body={"temperature": 0},
        thinking=thinking,
        messages=[
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {"role": "user", "content": "And 3 + 3?"},
        ],
    )
    assert again.content[0].type == "thinking"
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(**ask, thinking={"type": "enabled", "budget_tokens": 100})
    assert "budget_tokens" in err.value.message
