"""POST /v1/chat/completions through the official SDK, streaming and not.

Tests taking the `client` fixture run twice: with the SDK as programs use it
and with `_strict_response_validation=True`.
"""

from __future__ import annotations

import openai

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
COUNT = [{"role": "user", "content": "Count from one to twenty in words, separated by spaces."}]


def _check_usage(usage) -> None:
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_non_streaming(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12)
    assert r.object == "chat.completion"
    assert r.id
    assert isinstance(r.created, int) and r.created > 0
    assert r.model == model
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    _check_usage(r.usage)
    assert r.usage.completion_tokens <= 12


def test_chat_streaming(client: openai.OpenAI, model: str):
    with client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=12, stream=True
    ) as stream:
        chunks = list(stream)
    assert chunks, "the stream carried no chunk"
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.usage is None, "usage on a chunk without stream_options.include_usage"
    assert {c.id for c in chunks} == {chunks[0].id}, "the id changed between chunks"
    assert {c.created for c in chunks} == {chunks[0].created}, "created changed between chunks"
    assert {c.model for c in chunks} == {model}
    assert chunks[0].choices and chunks[0].choices[0].delta.role == "assistant"
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert len(finishes) == 1, f"expected exactly one finish_reason, got {finishes}"
    assert finishes[0] in ("stop", "length")
    assert chunks[-1].choices[0].finish_reason == finishes[0], "finish_reason is not on the last chunk"
    text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert text


def test_stream_matches_non_stream_at_temperature_0(loose_client: openai.OpenAI, model: str):
    kwargs = dict(model=model, messages=HELLO, max_tokens=10, temperature=0)
    whole = loose_client.chat.completions.create(**kwargs)
    with loose_client.chat.completions.create(**kwargs, stream=True) as stream:
        text = "".join(ch.delta.content or "" for c in stream for ch in c.choices)
    assert text == whole.choices[0].message.content


def test_stream_include_usage(client: openai.OpenAI, model: str):
    with client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    assert len(chunks) >= 2
    last = chunks[-1]
    assert last.choices == []
    _check_usage(last.usage)
    assert last.usage.completion_tokens <= 8
    for c in chunks[:-1]:
        assert c.choices, "only the final usage chunk may have no choices"
        assert c.usage is None
        # The key is sent, as `"usage": null`.
        assert "usage" in c.model_fields_set, "chunk lacks the 'usage' key"
    assert {c.id for c in chunks} == {last.id}


def test_stop_strings(client: openai.OpenAI, model: str):
    base = dict(model=model, messages=COUNT, max_tokens=24, temperature=0)
    full = client.chat.completions.create(**base).choices[0].message.content
    words = full.split()
    assert len(words) >= 3, f"the model said too little to pick a stop word: {full!r}"
    stop = words[2]
    for stop_param in (stop, [stop, "zzz-never-said-zzz"]):
        r = client.chat.completions.create(**base, stop=stop_param)
        content = r.choices[0].message.content
        assert stop not in content, f"stop text {stop!r} leaked into {content!r}"
        assert r.choices[0].finish_reason == "stop"
        assert full.startswith(content.rstrip()), (full, content)


def test_stop_string_streaming(loose_client: openai.OpenAI, model: str):
    base = dict(model=model, messages=COUNT, max_tokens=24, temperature=0)
    full = loose_client.chat.completions.create(**base).choices[0].message.content
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    with loose_client.chat.completions.create(**base, stop=[stop], stream=True) as stream:
        chunks = list(stream)
    text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert stop not in text
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"]


def test_max_tokens_1_finishes_with_length(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(model=model, messages=COUNT, max_tokens=1)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 1


def test_max_completion_tokens_1_finishes_with_length(loose_client: openai.OpenAI, model: str):
    r = loose_client.chat.completions.create(model=model, messages=COUNT, max_completion_tokens=1)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 1


def test_same_seed_same_text(loose_client: openai.OpenAI, model: str):
    kwargs = dict(model=model, messages=HELLO, max_tokens=12, temperature=1, seed=1234)
    a = loose_client.chat.completions.create(**kwargs).choices[0].message.content
    b = loose_client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b


def test_n_2(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=6, n=2, temperature=1, seed=7
    )
    assert sorted(c.index for c in r.choices) == [0, 1]
    for c in r.choices:
        assert c.message.role == "assistant"
        assert isinstance(c.message.content, str)
        assert c.finish_reason in ("stop", "length")
    _check_usage(r.usage)


def test_n_2_streaming(loose_client: openai.OpenAI, model: str):
    with loose_client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=6, n=2, temperature=1, seed=7, stream=True
    ) as stream:
        chunks = list(stream)
    finishes = {}
    roles = {}
    for c in chunks:
        for ch in c.choices:
            if ch.delta.role:
                roles.setdefault(ch.index, ch.delta.role)
            if ch.finish_reason:
                assert ch.index not in finishes, f"choice {ch.index} finished twice"
                finishes[ch.index] = ch.finish_reason
    assert sorted(finishes) == [0, 1]
    assert roles == {0: "assistant", 1: "assistant"}


def test_logprobs_concatenate_to_content(client: openai.OpenAI, model: str):
    # Greedy, so the text is plain English: the token strings concatenate to it.
    r = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2
    )
    choice = r.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0.0
        assert len(e.top_logprobs) == 2
        assert all(t.logprob <= 0.0 for t in e.top_logprobs)
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob
        # Greedy: the chosen token is the most likely one.
        assert e.logprob >= e.top_logprobs[0].logprob - 1e-4


def test_logprob_bytes_concatenate_to_content(loose_client: openai.OpenAI, model: str):
    # Sampled text may split a character (an emoji) across tokens: each token's
    # string is then partial, but its bytes still add up to the content.
    for seed in (1, 2, 3):
        r = loose_client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=8, temperature=1, seed=seed, logprobs=True
        )
        choice = r.choices[0]
        entries = choice.logprobs.content
        assert entries and all(e.bytes is not None for e in entries)
        raw = b"".join(bytes(e.bytes) for e in entries)
        assert raw.decode("utf-8", "replace") == choice.message.content


def test_no_logprobs_unless_asked(loose_client: openai.OpenAI, model: str):
    r = loose_client.chat.completions.create(model=model, messages=HELLO, max_tokens=4)
    assert r.choices[0].logprobs is None


def test_content_parts_roles_and_ignored_fields(client: openai.OpenAI, model: str):
    r = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "developer", "content": "You are terse."},
            {"role": "system", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Name a colour."},
        ],
        max_tokens=4,
        metadata={"suite": "e2e"},
        store=False,
        user="e2e-user",
        extra_body={"some_future_field": True},
    )
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")


def test_x_request_id_header(client: openai.OpenAI, model: str):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO, max_tokens=2)
    assert raw.headers.get("x-request-id")
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion._request_id == raw.headers.get("x-request-id")
