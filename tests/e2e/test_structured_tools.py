"""Structured output and tools through the official SDK against the real
binary, on the default model (SmolLM2, whose template knows no tools: the
generic scheme carries them).

- `chat.completions.parse` with a pydantic model, `json_object`, streamed
  `json_schema`, and a `max_tokens` that ends the JSON early (`length`);
- `tool_choice` required, named and none; streamed tool-call deltas that
  assemble into valid JSON arguments; a full tool loop where the test runs
  the function and sends its result back;
- 200 generated random schemas, each finished output validated with
  `jsonschema` (an output cut by `max_tokens` must be one running on in a
  number's decimals);
- bad input: a schema fault named by `param`, a tool named twice, a tool
  message without a call, an unknown call id, tool_choice without tools.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import jsonschema
import openai
import pydantic
import pytest

ASK = [{"role": "user", "content": "Describe a fictional person."}]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}},
            "required": ["city"],
        },
    },
}
WEATHER_ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=30)
    age: int
    role: Literal["engineer", "artist", "doctor"]
    hobbies: list[str] = pydantic.Field(max_length=3)


def test_parse_with_a_pydantic_model(client: openai.OpenAI, model: str):
    r = client.chat.completions.parse(
        model=model, messages=ASK, response_format=Person, max_tokens=200, seed=1
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    person = choice.message.parsed
    assert isinstance(person, Person)
    assert person.role in ("engineer", "artist", "doctor")
    # The text is the same object.
    assert Person.model_validate_json(choice.message.content) == person


def test_json_object(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": 'Reply with a JSON object like {"name": "Tom", "color": "grey"} for a cat.'}],
        response_format={"type": "json_object"},
        max_tokens=150,
        temperature=0,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    assert isinstance(json.loads(choice.message.content), dict)


def test_streamed_json_schema(loose_client: openai.OpenAI, model: str):
    schema = Person.model_json_schema()
    schema["additionalProperties"] = False
    text, reasons = "", []
    with loose_client.chat.completions.create(
        model=model,
        messages=ASK,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
        max_tokens=200,
        stream=True,
        seed=3,
    ) as stream:
        chunks = 0
        for chunk in stream:
            for c in chunk.choices:
                text += c.delta.content or ""
                if c.finish_reason:
                    reasons.append(c.finish_reason)
            chunks += 1
    assert chunks > 3
    assert reasons == ["stop"]
    Person.model_validate_json(text)


def test_json_cut_by_max_tokens_is_length(loose_client: openai.OpenAI, model: str):
    r = loose_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": 'Reply with a JSON object like {"name": "Tom", "color": "grey"} for a cat.'}],
        response_format={"type": "json_object"},
        max_tokens=4,
        temperature=0,
    )
    assert r.choices[0].finish_reason == "length"
    with pytest.raises(ValueError):
        json.loads(r.choices[0].message.content)


def _args(call) -> dict:
    assert call.type == "function"
    assert call.id
    return json.loads(call.function.arguments)


def test_tool_choice_required(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(
        model=model, messages=WEATHER_ASK, tools=[WEATHER, TIME], tool_choice="required",
        max_tokens=300, seed=4,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and choice.message.content is None
    for call in calls:
        assert call.function.name in ("get_weather", "get_time")
        args = _args(call)
        if call.function.name == "get_weather":
            jsonschema.validate(args, WEATHER["function"]["parameters"])
    assert len({c.id for c in calls}) == len(calls)


def test_tool_choice_named(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(
        model=model, messages=WEATHER_ASK, tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False, max_tokens=300, seed=5,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_time"
    assert isinstance(_args(call)["city"], str)


def test_tool_choice_none_answers_in_text(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(
        model=model, messages=WEATHER_ASK, tools=[WEATHER], tool_choice="none",
        max_tokens=30, seed=6,
    )
    choice = r.choices[0]
    assert choice.message.tool_calls is None
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_streamed_tool_call_deltas_assemble(loose_client: openai.OpenAI, model: str):
    calls: dict[int, dict] = {}
    reasons = []
    fragments = 0
    with loose_client.chat.completions.create(
        model=model, messages=WEATHER_ASK, tools=[WEATHER], tool_choice="required",
        max_tokens=300, stream=True, seed=7,
    ) as stream:
        for chunk in stream:
            for c in chunk.choices:
                if c.finish_reason:
                    reasons.append(c.finish_reason)
                for d in c.delta.tool_calls or []:
                    if d.index not in calls:
                        # OpenAI's first piece: index, id, type and name together.
                        assert d.id and d.type == "function" and d.function.name
                        calls[d.index] = {"id": d.id, "name": d.function.name, "args": ""}
                    else:
                        assert d.id is None and d.function.name is None
                    calls[d.index]["args"] += d.function.arguments or ""
                    fragments += 1
    assert reasons == ["tool_calls"]
    assert calls and sorted(calls) == list(range(len(calls)))
    assert fragments > len(calls), "arguments should arrive in several fragments"
    for call in calls.values():
        assert call["name"] == "get_weather"
        jsonschema.validate(json.loads(call["args"]), WEATHER["function"]["parameters"])


def _weather(city: str, unit: str) -> dict:
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "unit": unit}


def test_a_full_tool_loop(client: openai.OpenAI, model: str):
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the weather in Paris? Use celsius."},
    ]
    first = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=300, seed=8,
    )
    message = first.choices[0].message
    (call,) = message.tool_calls
    result = _weather(**_args(call))
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    second = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], max_tokens=60, seed=9,
    )
    final = second.choices[0]
    # Under `auto` the model may answer or call again; either is well formed.
    if final.message.tool_calls:
        assert final.finish_reason == "tool_calls"
        _args(final.message.tool_calls[0])
    else:
        assert final.message.content
        assert final.finish_reason in ("stop", "length")
    # The result went into the prompt: the second prompt is longer than the first.
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 10


def _random_schema(rng: random.Random, depth: int = 0) -> dict:
    kinds = ["string", "integer", "number", "boolean", "enum", "const", "nullable"]
    if depth < 3:
        kinds += ["object", "array", "anyOf"]
    kind = rng.choice(kinds)
    if kind == "string":
        s = {"type": "string", "maxLength": rng.randint(1, 12)}
        if rng.random() < 0.3:
            s = {"type": "string", "pattern": "^[a-z]{1,5}$"}
        return s
    if kind == "integer":
        lo = rng.randint(-50, 50)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 100)}
    if kind == "number":
        return {"type": "number", "minimum": 0, "maximum": 1000}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "enum":
        return {"enum": rng.sample(["red", "green", "blue", 1, 2, None, True], rng.randint(1, 4))}
    if kind == "const":
        return {"const": rng.choice(["x", 7, False])}
    if kind == "nullable":
        return {"type": ["string", "null"], "maxLength": 8}
    if kind == "array":
        lo = rng.randint(0, 2)
        return {"type": "array", "items": _random_schema(rng, depth + 1),
                "minItems": lo, "maxItems": lo + rng.randint(0, 2)}
    if kind == "anyOf":
        return {"anyOf": [_random_schema(rng, depth + 1) for _ in range(rng.randint(2, 3))]}
    names = rng.sample(["a", "b", "c", "d", "e", "f"], rng.randint(1, 4))
    props = {n: _random_schema(rng, depth + 1) for n in names}
    return {"type": "object", "properties": props, "required": names, "additionalProperties": False}


def test_200_random_schemas(loose_client: openai.OpenAI, model: str):
    rng = random.Random(2026)
    schemas = [_random_schema(rng) for _ in range(200)]

    def answer(i: int):
        return loose_client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"Answer #{i} in JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schemas[i]}},
            max_tokens=300,
            seed=i,
        ).choices[0]

    # Eight at a time: the engine batches them.
    with ThreadPoolExecutor(8) as pool:
        choices = list(pool.map(answer, range(200)))
    finished = 0
    for schema, choice in zip(schemas, choices):
        if choice.finish_reason == "length":
            # Only a number may run on (the 135M model writes endless decimals).
            assert '"number"' in json.dumps(schema), (schema, choice.message.content[-80:])
            continue
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), schema)
        finished += 1
    assert finished >= 170, finished


def _bad(client: openai.OpenAI, model: str, **kwargs) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, max_tokens=5, **kwargs)
    return err.value


def test_bad_schemas_name_their_place(loose_client: openai.OpenAI, model: str):
    e = _bad(
        loose_client, model, messages=ASK,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"x": {"type": "strnig"}}}}},
    )
    assert e.body["param"] == "response_format.json_schema.schema.properties.x.type"
    deep: dict = {"type": "string"}
    for _ in range(14):
        deep = {"type": "array", "items": deep}
    e = _bad(loose_client, model, messages=ASK,
             response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": deep}})
    assert e.body["param"].startswith("response_format.json_schema.schema.items")
    assert "nested" in e.body["message"]
    e = _bad(loose_client, model, messages=ASK,
             response_format={"type": "json_schema", "json_schema": {"name": "x", "strict": True,
                              "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}})
    assert e.body["param"] == "response_format.json_schema.schema.additionalProperties"
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "not": {}}}}}}
    e = _bad(loose_client, model, messages=ASK, tools=[bad_tool], tool_choice="required")
    assert e.body["param"] == "tools[0].function.parameters.properties.q.not"


def test_bad_tool_turns(loose_client: openai.OpenAI, model: str):
    e = _bad(loose_client, model, messages=ASK, tools=[WEATHER, WEATHER])
    assert e.body["param"] == "tools[1].function.name"
    e = _bad(loose_client, model, messages=ASK + [{"role": "tool", "tool_call_id": "x", "content": "1"}])
    assert e.body["param"] == "messages[1].role"
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    e = _bad(loose_client, model, messages=ASK + [
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_2", "content": "1"},
    ])
    assert e.body["param"] == "messages[2].tool_call_id"
    e = _bad(loose_client, model, messages=ASK, tool_choice="required")
    assert e.body["param"] == "tool_choice"
