"""Rate limits through the official SDK: OpenAI's `x-ratelimit-*` headers on
every answer, and `openai.RateLimitError` (429, `retry-after`) at the limit.

Each test starts its own `parlance serve` with low limits (`serve_with` in
conftest.py), so the session server's budget is never touched.
"""

from __future__ import annotations

import openai

HELLO = [{"role": "user", "content": "Hi"}]

HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{srv.root}/v1", api_key="sk-test", max_retries=0, timeout=60.0
    )


def test_headers_count_down_then_rate_limit_error(serve_with):
    client = _client(serve_with("--rpm", "3", "--tpm", "100000"))
    remaining = []
    for _ in range(3):
        raw = client.models.with_raw_response.list()
        assert raw.http_response.status_code == 200
        for name in HEADERS:
            assert name in raw.headers, f"no {name} in {dict(raw.headers)}"
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
        assert raw.parse().data, "the listing itself is intact"
    # One request refills every 20 s: far slower than these calls.
    assert remaining[0] <= 2 and remaining[1] < remaining[0] and remaining[2] < remaining[1], remaining

    try:
        client.models.list()
    except openai.RateLimitError as e:
        assert e.status_code == 429
        assert e.code == "rate_limit_exceeded"
        assert e.type == "requests"
        assert e.message and "Rate limit reached for requests" in e.message
        assert int(e.response.headers["retry-after"]) >= 1
        assert int(e.response.headers["retry-after-ms"]) >= 1
        assert e.response.headers["x-ratelimit-remaining-requests"] == "0"
    else:
        raise AssertionError("the fourth request within a minute at --rpm 3 was not refused")


def test_tokens_are_counted_and_a_request_over_the_limit_is_refused(serve_with):
    client = _client(serve_with("--tpm", "300"))
    model = client.models.list().data[0].id

    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=HELLO, max_tokens=1
    )
    completion = raw.parse()
    charged = completion.usage.prompt_tokens + 1
    assert raw.headers["x-ratelimit-limit-tokens"] == "300"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 300 - charged

    # A stream carries the headers too.
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=HELLO, max_tokens=1, stream=True
    ) as streamed:
        for name in HEADERS:
            assert name in streamed.headers, f"no {name} on a stream"
        assert int(streamed.headers["x-ratelimit-remaining-tokens"]) < 300
        chunks = list(streamed.parse())
        assert chunks, "the stream had no chunk"

    # Prompt + max_tokens above the limit itself: never admitted.
    try:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=1000)
    except openai.RateLimitError as e:
        assert e.status_code == 429
        assert e.code == "rate_limit_exceeded"
        assert e.type == "tokens"
        assert "Request too large" in e.message
    else:
        raise AssertionError("a request of over 1000 tokens passed a limit of 300 per minute")
