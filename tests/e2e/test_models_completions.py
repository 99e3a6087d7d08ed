"""GET /v1/models, GET /v1/models/{id} and POST /v1/completions through the SDK."""

from __future__ import annotations

import openai

# "Hello world" in SmolLM2's tokenizer (fixtures/tokenizer/smollm2-135m-instruct.json).
HELLO_WORLD_IDS = [19556, 905]


def test_models_list(client: openai.OpenAI):
    page = client.models.list()
    assert page.data, "no model listed"
    for m in page.data:
        assert m.object == "model"
        assert isinstance(m.id, str) and m.id
        assert isinstance(m.created, int)
        assert isinstance(m.owned_by, str)
    ids = [m.id for m in page.data]
    assert len(ids) == len(set(ids)), f"duplicate model ids: {ids}"


def test_models_retrieve(client: openai.OpenAI, model: str):
    m = client.models.retrieve(model)
    assert m.id == model
    assert m.object == "model"


def test_models_retrieve_unknown_is_not_found(loose_client: openai.OpenAI):
    try:
        loose_client.models.retrieve("no-such-model")
    except openai.NotFoundError as e:
        assert e.status_code == 404
    else:
        raise AssertionError("retrieving an unknown model did not raise NotFoundError")


def test_completion_string_prompt(client: openai.OpenAI, model: str):
    r = client.completions.create(model=model, prompt="The capital of France is", max_tokens=6)
    assert r.object == "text_completion"
    assert r.id
    assert r.model == model
    assert len(r.choices) == 1
    assert r.choices[0].index == 0
    assert isinstance(r.choices[0].text, str) and r.choices[0].text
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_token_id_prompt(client: openai.OpenAI, model: str):
    r = client.completions.create(model=model, prompt=HELLO_WORLD_IDS, max_tokens=6, temperature=0)
    assert r.object == "text_completion"
    assert len(r.choices) == 1
    assert isinstance(r.choices[0].text, str)
    assert r.usage.prompt_tokens == len(HELLO_WORLD_IDS)


def test_completion_token_ids_equal_the_text(loose_client: openai.OpenAI, model: str):
    by_ids = loose_client.completions.create(
        model=model, prompt=HELLO_WORLD_IDS, max_tokens=6, temperature=0
    )
    by_text = loose_client.completions.create(
        model=model, prompt="Hello world", max_tokens=6, temperature=0
    )
    assert by_text.usage.prompt_tokens == by_ids.usage.prompt_tokens
    assert by_text.choices[0].text == by_ids.choices[0].text


def test_completion_list_of_prompts(client: openai.OpenAI, model: str):
    r = client.completions.create(model=model, prompt=["Once upon a time", "The sky is"], max_tokens=3)
    assert sorted(c.index for c in r.choices) == [0, 1]
    for c in r.choices:
        assert isinstance(c.text, str)


def test_completion_streaming(loose_client: openai.OpenAI, model: str):
    with loose_client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=6, stream=True
    ) as stream:
        chunks = list(stream)
    assert chunks
    assert {c.id for c in chunks} == {chunks[0].id}
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert len(finishes) == 1
    assert "".join(ch.text for c in chunks for ch in c.choices)
