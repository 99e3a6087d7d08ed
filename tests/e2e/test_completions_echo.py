"""`/v1/completions`' `echo` and `suffix` through the openai SDK against the
real `parlance serve`: `echo` puts the prompt before the generated text
(whole and streamed, text and token-id prompts, with `n`); `max_tokens: 0`
generates nothing (the echoed prompt alone, `finish_reason: length`); `suffix` and
`echo` with `logprobs` are 400s naming their param, never ignored."""

from __future__ import annotations

import openai
import pytest

# "Hello world" in SmolLM2's tokenizer (fixtures/tokenizer/smollm2-135m-instruct.json).
HELLO_WORLD_IDS = [19556, 905]


def test_echo_prepends_the_prompt(client: openai.OpenAI, model: str):
    plain = client.completions.create(model=model, prompt="The sky is", max_tokens=4, temperature=0)
    echoed = client.completions.create(
        model=model, prompt="The sky is", max_tokens=4, temperature=0, echo=True
    )
    assert echoed.choices[0].text == "The sky is" + plain.choices[0].text
    assert echoed.usage.completion_tokens == plain.usage.completion_tokens

    two = client.completions.create(
        model=model, prompt=["A", "B"], n=2, max_tokens=2, echo=True, seed=1
    )
    assert [c.text[:1] for c in sorted(two.choices, key=lambda c: c.index)] == ["A", "A", "B", "B"]

    tokens = client.completions.create(model=model, prompt=HELLO_WORLD_IDS, max_tokens=2, echo=True)
    assert tokens.choices[0].text.startswith("Hello world")


def test_max_tokens_zero_generates_nothing(
    client: openai.OpenAI, loose_client: openai.OpenAI, model: str
):
    # A legacy client scoring or echoing its prompt: no token is generated,
    # the prompt is counted (and billed), the answer ends at its limit.
    echoed = client.completions.create(model=model, prompt="The sky is", max_tokens=0, echo=True)
    assert echoed.choices[0].text == "The sky is"
    assert echoed.choices[0].finish_reason == "length"
    assert echoed.usage.completion_tokens == 0
    assert echoed.usage.prompt_tokens > 0
    plain = client.completions.create(model=model, prompt="The sky is", max_tokens=0)
    assert plain.choices[0].text == ""
    assert plain.usage.completion_tokens == 0
    streamed = list(
        loose_client.completions.create(
            model=model, prompt="The sky is", max_tokens=0, echo=True, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "The sky is"


def test_echo_streams_the_prompt_first(loose_client: openai.OpenAI, model: str):
    chunks = list(
        loose_client.completions.create(
            model=model, prompt="Once upon a time", max_tokens=4, echo=True, stream=True, temperature=0
        )
    )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts[0] == "Once upon a time"
    whole = loose_client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=4, echo=True, temperature=0
    )
    assert "".join(texts) == whole.choices[0].text


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"suffix": "and so on."}, "suffix"), ({"echo": True, "logprobs": 2}, "echo")],
)
def test_unserved_options_are_refused_by_name(loose_client: openai.OpenAI, model: str, extra, param):
    with pytest.raises(openai.BadRequestError) as raised:
        loose_client.completions.create(model=model, prompt="x", max_tokens=2, **extra)
    assert raised.value.body["param"] == param
