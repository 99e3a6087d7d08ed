"""Errors arrive as the SDK's exception classes, with the OpenAI error object
`{"error": {"message", "type", "param", "code"}}` behind them."""

from __future__ import annotations

import openai
import pytest

HELLO = [{"role": "user", "content": "Hi"}]


def _check_error_object(e: openai.APIStatusError) -> None:
    # The SDK hands over the inner object of {"error": {...}} as e.body.
    assert isinstance(e.body, dict), f"error body is not an object: {e.body!r}"
    assert set(e.body) >= {"message", "type", "param", "code"}, f"missing keys in {e.body!r}"
    assert isinstance(e.body["message"], str) and e.body["message"]
    assert isinstance(e.body["type"], str) and e.body["type"]
    assert e.response.headers.get("x-request-id"), "error response without x-request-id"


def test_unknown_model_is_not_found(loose_client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as info:
        loose_client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=2)
    e = info.value
    assert e.status_code == 404
    assert e.code == "model_not_found"
    _check_error_object(e)


def test_unknown_model_completions_is_not_found(loose_client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as info:
        loose_client.completions.create(model="no-such-model", prompt="Hi", max_tokens=2)
    assert info.value.code == "model_not_found"


def test_temperature_out_of_range(loose_client: openai.OpenAI, model: str):
    with pytest.raises(openai.BadRequestError) as info:
        loose_client.chat.completions.create(model=model, messages=HELLO, temperature=5, max_tokens=2)
    e = info.value
    assert e.status_code == 400
    assert e.param == "temperature"
    assert e.body["param"] == "temperature"
    _check_error_object(e)


def test_empty_messages(loose_client: openai.OpenAI, model: str):
    with pytest.raises(openai.BadRequestError) as info:
        loose_client.chat.completions.create(model=model, messages=[], max_tokens=2)
    e = info.value
    assert e.param == "messages"
    _check_error_object(e)


def test_unknown_role(loose_client: openai.OpenAI, model: str):
    with pytest.raises(openai.BadRequestError) as info:
        loose_client.chat.completions.create(
            model=model, messages=[{"role": "wizard", "content": "Hi"}], max_tokens=2
        )
    e = info.value
    assert e.param and e.param.startswith("messages"), e.param
    _check_error_object(e)


@pytest.mark.parametrize(
    "field,value",
    [("top_p", 1.5), ("n", 0), ("max_tokens", -1), ("presence_penalty", 3), ("frequency_penalty", -3)],
)
def test_invalid_field_names_param(loose_client: openai.OpenAI, model: str, field: str, value):
    with pytest.raises(openai.BadRequestError) as info:
        loose_client.chat.completions.create(model=model, messages=HELLO, **{field: value})
    assert info.value.param == field
    _check_error_object(info.value)


def test_server_still_answers_after_errors(loose_client: openai.OpenAI, model: str):
    r = loose_client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
    assert r.choices[0].message.role == "assistant"
