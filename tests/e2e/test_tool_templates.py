"""Tools through a model's own chat template, end to end with the official
SDK: the real binary serves the default SmolLM2 weights with a real
template from llama.cpp b11434's source (`--chat-template`), so the
request's tools, the assistant's tool calls and the tool results are
rendered by that template, and the output is constrained to and read in
that family's call syntax.

The raw output is visible through `logprobs` (the tokens the model wrote):
it shows the family's own syntax (Llama 3's `{"name": …, "parameters": …}`,
Mistral's `[TOOL_CALLS]…[CALL_ID]…[ARGS]`), which the generic scheme
would never write. The full loop sends the call and its result back, which
Mistral's template accepts only with its 9-character call ids; Llama 3.1's
refuses (with its own words, as a 400) an assistant turn with two calls,
which shows the conversation's calls reach the template itself.

The templates come from `scripts/reference/template_fixtures.sh` (in
`~/.cache/parlance-reference/llama.cpp/models/templates`, or
`$PARLANCE_TEMPLATES_DIR`); without them these tests skip, unless
`PARLANCE_REQUIRE_VOCAB` is set, when they fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import openai
import pytest

from conftest import REQUEST_TIMEOUT_S

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
ASK = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris? Use celsius."},
]

# template file → how its raw output begins a call to get_weather
TEMPLATES = {
    "Qwen-Qwen2.5-7B-Instruct.jinja": '<tool_call>\n{"name": "get_weather", "arguments": {',
    "meta-llama-Llama-3.1-8B-Instruct.jinja": '{"name": "get_weather", "parameters": {',
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": "[TOOL_CALLS]get_weather[CALL_ID]",
}


def _template(name: str) -> Path:
    folder = os.environ.get("PARLANCE_TEMPLATES_DIR") or str(
        Path.home() / ".cache/parlance-reference/llama.cpp/models/templates"
    )
    path = Path(folder) / name
    if not path.is_file():
        if os.environ.get("PARLANCE_REQUIRE_VOCAB"):
            pytest.fail(f"no {name} in {folder}: run scripts/reference/template_fixtures.sh")
        pytest.skip(f"no {name} in {folder} (scripts/reference/template_fixtures.sh fetches it)")
    return path


@pytest.fixture(params=sorted(TEMPLATES))
def templated(request, serve_with):
    """A client of a server whose SmolLM2 renders with the template, and the
    opening its calls are written with."""
    srv = serve_with("--chat-template", str(_template(request.param)))
    client = openai.OpenAI(
        base_url=f"{srv.root}/v1", api_key="sk-test", max_retries=0, timeout=REQUEST_TIMEOUT_S
    )
    model = client.models.list().data[0].id
    return client, model, TEMPLATES[request.param]


def test_a_templated_tool_loop(templated):
    client, model, opening = templated
    first = client.chat.completions.create(
        model=model, messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=120, seed=3, logprobs=True,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    raw = "".join(t.token for t in choice.logprobs.content)
    assert raw.startswith(opening), raw
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER["function"]["parameters"])

    # The call and its result go back through the template (Mistral's
    # refuses ids that are not 9 letters and digits: they are mapped).
    messages = ASK + [
        choice.message.model_dump(exclude_none=True, exclude={"logprobs"}),
        {"role": "tool", "tool_call_id": call.id,
         "content": json.dumps({"city": args["city"], "temperature": 21, "unit": "celsius"})},
    ]
    second = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], max_tokens=40, seed=4,
    )
    final = second.choices[0]
    if final.message.tool_calls:
        assert final.finish_reason == "tool_calls"
        json.loads(final.message.tool_calls[0].function.arguments)
    else:
        assert final.message.content
        assert final.finish_reason in ("stop", "length")


def test_templated_calls_stream_in_openai_deltas(templated):
    client, model, _ = templated
    calls: dict[int, dict] = {}
    reasons = []
    with client.chat.completions.create(
        model=model, messages=ASK, tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False, max_tokens=120, stream=True, seed=5,
    ) as stream:
        for chunk in stream:
            for c in chunk.choices:
                if c.finish_reason:
                    reasons.append(c.finish_reason)
                assert not c.delta.content, c.delta.content
                for d in c.delta.tool_calls or []:
                    if d.index not in calls:
                        assert d.id and d.type == "function" and d.function.name
                        calls[d.index] = {"name": d.function.name, "args": ""}
                    else:
                        assert d.id is None and d.function.name is None
                    calls[d.index]["args"] += d.function.arguments or ""
    assert reasons == ["tool_calls"]
    assert calls and sorted(calls) == list(range(len(calls)))
    for call in calls.values():
        assert call["name"] == "get_weather"
        jsonschema.validate(json.loads(call["args"]), WEATHER["function"]["parameters"])


def test_the_conversation_reaches_the_template_itself(serve_with):
    """Llama 3.1's template refuses an assistant turn with two calls (its
    own `raise_exception`): that refusal, as a 400 carrying the template's
    words, shows the tool calls were rendered by the template and not by
    the generic scheme (which would take them)."""
    srv = serve_with("--chat-template", str(_template("meta-llama-Llama-3.1-8B-Instruct.jinja")))
    client = openai.OpenAI(
        base_url=f"{srv.root}/v1", api_key="sk-test", max_retries=0, timeout=REQUEST_TIMEOUT_S
    )
    model = client.models.list().data[0].id
    call = lambda i, city: {  # noqa: E731
        "id": f"call_{i}", "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city, "unit": "celsius"})},
    }
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call(1, "Paris"), call(2, "Oslo")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12"},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], max_tokens=5)
    assert "only supports single tool-calls" in str(refused.value)
    # One call at a time is what it takes.
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call(1, "Paris")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21"},
    ]
    r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], max_tokens=5)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
