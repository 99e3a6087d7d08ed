"""The Responses API end to end, with the official `openai` SDK against the
real `parlance serve`: create, stream (typed events in OpenAI's order with a
rising sequence_number, assembled by the SDK's `responses.stream()`),
retrieve, delete, input items, chaining with `previous_response_id`,
`store: false`, background runs and cancel, a function-call round trip,
`text.format` json_schema, bad input (each refused in the right shape, with
nothing stored or billed), and the ledger rows equal to the usage the client
was told.
"""

from __future__ import annotations

import json
import sqlite3
import time

import openai
import pytest

MAX = 16  # OpenAI's smallest max_output_tokens


def ledger_rows(server) -> list[tuple]:
    with sqlite3.connect(f"{server.data_dir}/parlance.db") as conn:
        return conn.execute(
            "SELECT request_id, prompt_tokens, cached_tokens, completion_tokens, status, endpoint "
            "FROM usage_ledger ORDER BY id"
        ).fetchall()


def stored_count(server) -> int:
    with sqlite3.connect(f"{server.data_dir}/parlance.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def wait_for(predicate, what: str, timeout: float = 60.0):
    """Polls `predicate` until it returns a truthy value (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_create_returns_a_message_with_usage(client, model):
    response = client.responses.create(model=model, input="Say hello.", max_output_tokens=MAX)
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    assert response.output_text == message.content[0].text
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= MAX
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )
    assert response.usage.input_tokens_details.cached_tokens >= 0


def test_stream_sends_typed_events_in_order(client, model):
    kinds = []
    sequence = []
    deltas = []
    # Greedy and with room to finish, so that the answer completes (the SDK's
    # helper assembles a `response.completed` stream).
    with client.responses.stream(
        model=model, input="Say OK.", temperature=0, max_output_tokens=200
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            sequence.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert sequence == list(range(len(sequence))), "sequence_number must rise by one from 0"
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    last = kinds[-1]
    assert last == "response.completed", kinds[-3:]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert all(k == "response.output_text.delta" for k in kinds[4:-4])
    assert final.output_text == "".join(deltas)
    assert final.status == ("completed" if last == "response.completed" else "incomplete")
    # The stored response is there as soon as the last event is read.
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == final.output_text
    assert stored.usage.output_tokens == final.usage.output_tokens


def test_retrieve_input_items_and_delete(client, model):
    created = client.responses.create(
        model=model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi there."}]}],
        instructions="Answer briefly.",
        metadata={"case": "retrieve"},
        max_output_tokens=MAX,
    )
    again = client.responses.retrieve(created.id)
    assert again.id == created.id
    assert again.output_text == created.output_text
    assert again.metadata == {"case": "retrieve"}
    assert again.instructions == "Answer briefly."
    items = client.responses.input_items.list(created.id)
    assert len(items.data) == 1
    item = items.data[0]
    assert item.type == "message" and item.role == "user"
    assert item.content[0].text == "Hi there."
    assert item.id
    deleted = client.responses.delete(created.id)
    # The SDK returns None for the deletion (its type is empty); the call
    # itself must succeed, and the response be gone after it.
    del deleted
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_input_items_page(loose_client, model):
    created = loose_client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
        max_output_tokens=MAX,
    )
    desc = loose_client.responses.input_items.list(created.id, limit=2)
    assert [i.content[0].text for i in desc.data] == ["three", "two"]
    assert desc.has_more
    rest = loose_client.responses.input_items.list(created.id, limit=2, after=desc.last_id)
    assert [i.content[0].text for i in rest.data] == ["one"]
    assert not rest.has_more
    asc = loose_client.responses.input_items.list(created.id, order="asc")
    assert [i.content[0].text for i in asc.data] == ["one", "two", "three"]


def test_chaining_carries_the_conversation_and_bills_it(loose_client, model, server):
    first = loose_client.responses.create(
        model=model, input="My name is Ada.", max_output_tokens=MAX
    )
    second = loose_client.responses.create(
        model=model,
        previous_response_id=first.id,
        input="What is my name?",
        max_output_tokens=MAX,
    )
    assert second.previous_response_id == first.id
    # The chained prompt holds the first turn's input and output, and the
    # engine's prefix cache serves the part it already saw.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.input_tokens_details.cached_tokens > 0
    # Only this turn's input is listed.
    items = loose_client.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["What is my name?"]
    # The ledger bills the whole prompt, cached tokens included.
    row = ledger_rows(server)[-1]
    assert row[1] == second.usage.input_tokens
    assert row[2] == second.usage.input_tokens_details.cached_tokens
    assert row[3] == second.usage.output_tokens
    # Deleting the first turn leaves the second continuable (its own copy).
    loose_client.responses.delete(first.id)
    third = loose_client.responses.create(
        model=model, previous_response_id=second.id, input="Thanks.", max_output_tokens=MAX
    )
    assert third.usage.input_tokens > second.usage.input_tokens


def test_store_false_is_never_retrievable(loose_client, model):
    response = loose_client.responses.create(
        model=model, input="Hello.", store=False, max_output_tokens=MAX
    )
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        loose_client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as err:
        loose_client.responses.create(
            model=model, previous_response_id=response.id, input="Again.", max_output_tokens=MAX
        )
    assert err.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"input": [{"type": "computer_call_output", "call_id": "x"}]}, "input[0].type"),
        ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"type": "function_call_output", "call_id": "nope", "output": "1"}]},
            "input[0].call_id",
        ),
        ({"input": "hi", "previous_response_id": "resp_doesnotexist"}, "previous_response_id"),
        ({"input": "hi", "max_output_tokens": 15}, "max_output_tokens"),
        ({"input": "hi", "temperature": 3}, "temperature"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0].content[0].type"),
    ],
)
def test_bad_input_is_refused_and_neither_stored_nor_billed(loose_client, model, server, kwargs, param):
    before = (len(ledger_rows(server)), stored_count(server))
    with pytest.raises(openai.BadRequestError) as err:
        loose_client.responses.create(model=model, **kwargs)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param
    assert err.value.body["type"] == "invalid_request_error"
    assert (len(ledger_rows(server)), stored_count(server)) == before


def test_unknown_model_and_unknown_id_are_404(loose_client):
    with pytest.raises(openai.NotFoundError):
        loose_client.responses.create(model="no-such-model", input="hi")
    with pytest.raises(openai.NotFoundError):
        loose_client.responses.retrieve("resp_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        loose_client.responses.input_items.list("resp_doesnotexist")


def test_ledger_equals_what_the_client_was_told(loose_client, model, server):
    raw = loose_client.responses.with_raw_response.create(
        model=model, input="Tell me a fact.", max_output_tokens=MAX
    )
    response = raw.parse()
    request_id = raw.headers["x-request-id"]
    rows = wait_for(
        lambda: [r for r in ledger_rows(server) if r[0] == request_id], "the ledger row"
    )
    assert len(rows) == 1
    _, prompt, cached, completion, status, endpoint = rows[0]
    assert (prompt, cached, completion, status, endpoint) == (
        response.usage.input_tokens,
        response.usage.input_tokens_details.cached_tokens,
        response.usage.output_tokens,
        "ok",
        "/v1/responses",
    )


def test_streamed_ledger_equals_the_final_usage(loose_client, model, server):
    with loose_client.responses.with_streaming_response.create(
        model=model, input="Name a colour.", max_output_tokens=MAX, stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        final = None
        for line in raw.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                if event["type"] in ("response.completed", "response.incomplete"):
                    final = event["response"]
    assert final is not None
    rows = wait_for(
        lambda: [r for r in ledger_rows(server) if r[0] == request_id], "the ledger row"
    )
    assert rows[0][1] == final["usage"]["input_tokens"]
    assert rows[0][3] == final["usage"]["output_tokens"]


def test_background_runs_detached_and_is_polled(loose_client, model):
    queued = loose_client.responses.create(
        model=model, input="Say yes.", background=True, max_output_tokens=MAX
    )
    assert queued.status == "queued" and queued.background is True
    done = wait_for(
        lambda: (r := loose_client.responses.retrieve(queued.id)).status
        in ("completed", "incomplete")
        and r,
        "the background response to finish",
    )
    assert done.usage.output_tokens > 0
    assert done.output_text
    # Cancelling a finished response returns it as it is.
    assert loose_client.responses.cancel(queued.id).status == done.status


def test_cancel_stops_a_background_response(loose_client, model):
    queued = loose_client.responses.create(
        model=model,
        input="Write a very long story about the sea.",
        background=True,
        max_output_tokens=4000,
    )
    cancelled = loose_client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    final = wait_for(
        lambda: (r := loose_client.responses.retrieve(queued.id)).status == "cancelled" and r,
        "the runner to record the cancel",
    )
    assert final.status == "cancelled"
    # A response that did not run in the background cannot be cancelled.
    plain = loose_client.responses.create(model=model, input="Hi.", max_output_tokens=MAX)
    with pytest.raises(openai.BadRequestError):
        loose_client.responses.cancel(plain.id)


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_function_call_round_trip(client, model):
    first = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=200,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls, f"no function_call in {first.output}"
    call = calls[0]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    assert call.call_id
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}],
        tools=[WEATHER_TOOL],
        tool_choice="none",
        max_output_tokens=MAX,
    )
    assert second.output[0].type == "message"
    # The call and its output are in the second turn's prompt.
    history = client.responses.input_items.list(second.id)
    assert [i.type for i in history.data] == ["function_call_output"]


def test_streamed_function_call_events(loose_client, model):
    kinds = []
    with loose_client.responses.stream(
        model=model,
        input="Weather in Rome?",
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=200,
    ) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = [item for item in final.output if item.type == "function_call"][0]
    json.loads(call.arguments)


def test_json_schema_text_format(client, model):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=model,
        input="Invent a person.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
        temperature=0,
        max_output_tokens=200,
    )
    person = json.loads(response.output_text)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    assert response.text.format.type == "json_schema"


def test_another_organisations_response_is_404(keyed_server, model):
    srv, keys = keyed_server
    acme = openai.OpenAI(base_url=f"{srv.root}/v1", api_key=keys["acme"], max_retries=0)
    globex = openai.OpenAI(base_url=f"{srv.root}/v1", api_key=keys["globex"], max_retries=0)
    mine = acme.responses.create(model=model, input="Secret plans.", max_output_tokens=MAX)
    assert acme.responses.retrieve(mine.id).id == mine.id
    with pytest.raises(openai.NotFoundError):
        globex.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        globex.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        globex.responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError) as err:
        globex.responses.create(
            model=model, previous_response_id=mine.id, input="Tell me.", max_output_tokens=MAX
        )
    assert err.value.body["param"] == "previous_response_id"
    # Still there for its owner.
    assert acme.responses.retrieve(mine.id).output_text == mine.output_text
