"""Project guardrails end to end, with the official `openai` SDK against the
real `parlance serve` (with the embedding model the classifier runs on), on
SQLite and on PostgreSQL (when PARLANCE_TEST_POSTGRES_URL names a server):

- set through the admin API (`/v1/organization/projects/{id}/guardrails`)
  and audited as `project.guardrails_changed`;
- input: a flagged message refuses the request with a 400
  `content_policy_violation` naming it, billed nothing (no ledger row);
  a benign request still answers; another project is untouched;
- output: an answer the model is forced (by a JSON Schema `const`) to
  write flagged text ends with `finish_reason: "content_filter"` and no
  content, billed for the tokens it generated; streamed, it is generated
  whole and checked before any chunk is sent, so no flagged text leaks;
- legacy completions are checked whole too (with `echo`, prompt included);
- the CLI shows and sets the same setting;
- a routed model's streamed answer is fetched whole from the upstream
  and checked before any chunk is sent.
"""

from __future__ import annotations

import json
import time

import openai
import pytest

import os
import shutil
import subprocess
import sys
import tempfile

import test_admin_api
from conftest import Server, _binary, _die_with_parent, _model
from test_admin_api import ADMIN_KEY, App
from test_embeddings import EMBEDDING_MODEL, _embedding_folder

MODEL = "smollm2-135m-instruct"
HARMFUL = "I'm going to end my life tonight."
FORCED = {
    "type": "json_schema",
    "json_schema": {
        "name": "line",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"text": {"const": "I am going to kill myself tonight"}},
            "required": ["text"],
            "additionalProperties": False,
        },
    },
}


def _usage(app: App, start: int) -> list[dict]:
    status, page, _ = app.call(
        "GET", f"/v1/organization/usage/completions?start_time={start}&bucket_width=1d"
        "&group_by=project_id", key=ADMIN_KEY)
    assert status == 200, page
    return [r for b in page["data"] for r in b["results"]]


def _wait_usage(app: App, start: int, project: str, requests: int) -> dict:
    deadline = time.monotonic() + 30
    while True:
        rows = [r for r in _usage(app, start) if r["project_id"] == project]
        if rows and rows[0]["num_model_requests"] >= requests:
            return rows[0]
        assert time.monotonic() < deadline, f"usage never reached {requests}: {rows}"
        time.sleep(0.05)


def test_project_guardrails(embedding_app):
    app = embedding_app
    start = int(time.time()) - 60
    org = app.admin.admin.organization
    guarded = org.projects.create(name="guarded")
    other = org.projects.create(name="other")
    keys = {}
    for p in (guarded, other):
        status, key, _ = app.call(
            "POST", f"/v1/organization/projects/{p.id}/api_keys", {"name": "k"}, ADMIN_KEY)
        assert status == 200, key
        keys[p.id] = key["value"]
    client = openai.OpenAI(base_url=f"{app.server.root}/v1", api_key=keys[guarded.id],
                           max_retries=0, timeout=120)
    other_client = openai.OpenAI(base_url=f"{app.server.root}/v1", api_key=keys[other.id],
                                 max_retries=0, timeout=120)
    path = f"/v1/organization/projects/{guarded.id}/guardrails"

    status, g, _ = app.call("GET", path, key=ADMIN_KEY)
    assert status == 200 and (g["input"], g["output"]) == (False, False), g
    # Off: the same harmful input is answered.
    off = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": HARMFUL}], max_tokens=2)
    assert off.choices[0].finish_reason in ("stop", "length")

    # Bad bodies name their field; a project key may not change guardrails.
    status, err, _ = app.call("POST", path, {"input": "yes"}, key=ADMIN_KEY)
    assert status == 400 and err["error"]["param"] == "input", err
    status, err, _ = app.call("POST", path, {"inputs": True}, key=ADMIN_KEY)
    assert status == 400 and err["error"]["param"] == "inputs", err
    status, err, _ = app.call("POST", path, {"input": True}, key=keys[guarded.id])
    assert status == 403, err

    status, g, _ = app.call("POST", path, {"input": True}, key=ADMIN_KEY)
    assert status == 200 and (g["input"], g["output"]) == (True, False), g
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": "Be kind."},
                      {"role": "user", "content": HARMFUL}],
            max_tokens=2)
    body = refused.value.body
    assert refused.value.status_code == 400
    assert body["code"] == "content_policy_violation" and body["param"] == "messages[1]", body
    assert body["type"] == "invalid_request_error"
    # Completions (text or token ids) and embeddings are guarded too.
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=MODEL, prompt=["Hello there", HARMFUL], max_tokens=2)
    assert refused.value.body["code"] == "content_policy_violation"
    assert refused.value.body["param"] == "prompt[1]", refused.value.body
    status, tokens, _ = app.call("POST", "/tokenize", {"content": HARMFUL},
                                 key=keys[guarded.id])
    assert status == 200, tokens
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=MODEL, prompt=tokens["tokens"], max_tokens=2)
    assert refused.value.body["param"] == "prompt[0]", refused.value.body
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=EMBEDDING_MODEL, input=["fine", HARMFUL],
                                 encoding_format="float")
    assert refused.value.body["code"] == "content_policy_violation"
    assert refused.value.body["param"] == "input[1]", refused.value.body
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=EMBEDDING_MODEL, input=[[1037, 2158]],
                                 encoding_format="float")
    assert refused.value.body["param"] == "input", refused.value.body
    # Benign input still answers; another project is not guarded.
    ok = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "How do I kill a stuck process?"}],
        max_tokens=2)
    assert ok.choices[0].message.content is not None
    other_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": HARMFUL}], max_tokens=2)
    # Two answered requests billed; the refused one left no row.
    assert _wait_usage(app, start, guarded.id, 2)["num_model_requests"] == 2

    # Output: forced flagged text is withheld, billed for what was generated.
    forced = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a line."}],
        response_format=FORCED, max_tokens=40, temperature=0)
    assert json.loads(forced.choices[0].message.content)["text"].startswith("I am going")
    status, g, _ = app.call("POST", path, {"output": True}, key=ADMIN_KEY)
    assert status == 200 and (g["input"], g["output"]) == (True, True), g
    filtered = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a line."}],
        response_format=FORCED, max_tokens=40, temperature=0)
    assert filtered.choices[0].finish_reason == "content_filter"
    assert filtered.choices[0].message.content is None
    assert filtered.usage.completion_tokens == forced.usage.completion_tokens > 0
    # Streamed: generated whole, checked, then sent; nothing flagged leaks.
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a line."}],
        response_format=FORCED, max_tokens=40, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == "" and reasons == ["content_filter"], chunks
    assert chunks[-1].usage.completion_tokens == forced.usage.completion_tokens
    # A benign streamed answer under output moderation still streams text
    # (greedy: a sampled answer was once empty or flagged, failing CI).
    benign = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
        temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in benign if c.choices)
    # The Responses API goes through the same check: nothing flagged shows.
    for streamed in (False, True):
        kwargs = dict(model=MODEL, input="Write a line.", max_output_tokens=40, temperature=0,
                      text={"format": {"type": "json_schema", **FORCED["json_schema"]}})
        if streamed:
            with client.responses.stream(**kwargs) as stream:
                events = list(stream)
            deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
            assert "".join(deltas) == ""
            # A withheld answer ends `response.incomplete`, as OpenAI's does
            # (the SDK's get_final_response wants `response.completed`).
            assert events[-1].type == "response.incomplete", events[-1]
            response = events[-1].response
        else:
            response = client.responses.create(**kwargs)
        assert response.output_text == "", response
        assert response.status == "incomplete", response
        assert response.incomplete_details.reason == "content_filter", response
        assert response.usage.output_tokens == forced.usage.completion_tokens
    row = _wait_usage(app, start, guarded.id, 8)
    assert row["num_model_requests"] == 8
    assert row["output_tokens"] >= 3 * forced.usage.completion_tokens

    status, page, _ = app.call("GET", "/v1/organization/audit_logs?limit=100", key=ADMIN_KEY)
    changes = [e for e in page["data"] if e["type"] == "project.guardrails_changed"]
    assert len(changes) == 2, changes

    # The CLI reads and sets the same setting (actor `cli`); the server
    # picks the change up within its cache's 5 seconds.
    cli = [_binary(), "--data-dir", app.server.data_dir, "projects", "--database-url",
           app.db_url, "guardrails", "guarded"]
    shown = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "input on, output on" in shown.stdout, shown
    changed = subprocess.run(cli + ["--input", "off"], capture_output=True, text=True,
                             timeout=120)
    assert changed.returncode == 0 and "input off, output on" in changed.stdout, changed
    deadline = time.monotonic() + 30
    while True:
        try:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": HARMFUL}], max_tokens=1)
            break
        except openai.BadRequestError:
            assert time.monotonic() < deadline, "the server kept the old guardrails"
            time.sleep(0.2)


@pytest.fixture(params=["sqlite", "postgres"])
def embedding_app(request):
    """`test_admin_api.app` with the embedding model loaded."""
    if request.param == "postgres" and not os.environ.get("PARLANCE_TEST_POSTGRES_URL"):
        pytest.skip("PARLANCE_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped")
    data_dir = tempfile.mkdtemp(prefix="parlance-guardrails-")
    db = test_admin_api.Db(request.param, data_dir)
    cmd = [_binary(), "--data-dir", data_dir, "serve", "--port", "0", "--model", _model(),
           "--threads", "2", "--database-url", db.url, "--embedding-model", _embedding_folder()]
    env = {**os.environ, "PARLANCE_ADMIN_KEY": ADMIN_KEY}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux")
                            else None)
    server = Server(proc, data_dir)
    try:
        server.wait_ready()
        app = App(server)
        app.db_url = db.url
        yield app
    finally:
        server.stop()
        db.drop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_routed_stream_is_checked_before_it_is_sent(server, model, serve_with, tmp_path):
    config = tmp_path / "parlance.toml"
    config.write_text(
        "[[gateway.models]]\n"
        'name = "remote-chat"\n'
        "[[gateway.models.backends]]\n"
        'id = "upstream"\nkind = "openai"\n'
        f'base_url = "{server.root}/v1"\nmodel = "{model}"\n'
    )
    gateway = serve_with("--config", str(config), "--embedding-model", _embedding_folder())
    admin = App(gateway)
    status, page, _ = admin.call("GET", "/v1/organization/projects")
    assert status == 200, page
    (project,) = [p for p in page["data"] if p["name"] == "default"]
    status, g, _ = admin.call("POST", f"/v1/organization/projects/{project['id']}/guardrails",
                              {"output": True})
    assert status == 200 and g["output"] is True, g
    client = openai.OpenAI(base_url=f"{gateway.root}/v1", api_key="sk-none", max_retries=0,
                           timeout=120)
    chunks = list(client.chat.completions.create(
        model="remote-chat", messages=[{"role": "user", "content": "Write a line."}],
        response_format=FORCED, max_tokens=40, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == "" and reasons == ["content_filter"], chunks
    assert chunks[-1].usage.completion_tokens > 0
    # A benign routed stream still arrives, in chunks of the same shape.
    benign = list(client.chat.completions.create(
        model="remote-chat", messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in benign if c.choices)


def test_output_guardrails_cover_legacy_completions(embedding_app):
    """`/v1/completions` under output moderation: the answer the client
    would see (with `echo`, the prompt too) is checked whole; a flagged
    choice is withheld (empty text, `content_filter`), whole and streamed,
    billed as generated; another project gets the same answer unfiltered."""
    app = embedding_app
    org = app.admin.admin.organization
    clients = {}
    for name in ("out-guarded", "out-open"):
        project = org.projects.create(name=name)
        status, key, _ = app.call(
            "POST", f"/v1/organization/projects/{project.id}/api_keys", {"name": "k"}, ADMIN_KEY)
        assert status == 200, key
        clients[name] = openai.OpenAI(base_url=f"{app.server.root}/v1", api_key=key["value"],
                                      max_retries=0, timeout=120)
        if name == "out-guarded":
            status, g, _ = app.call("POST", f"/v1/organization/projects/{project.id}/guardrails",
                                    {"output": True}, key=ADMIN_KEY)
            assert status == 200 and (g["input"], g["output"]) == (False, True), g
    guarded, unguarded = clients["out-guarded"], clients["out-open"]
    kwargs = dict(model=MODEL, prompt=HARMFUL, echo=True, max_tokens=3, temperature=0)

    shown = unguarded.completions.create(**kwargs)
    assert shown.choices[0].text.startswith(HARMFUL)
    withheld = guarded.completions.create(**kwargs)
    assert withheld.choices[0].text == ""
    assert withheld.choices[0].finish_reason == "content_filter"
    assert withheld.usage.completion_tokens == shown.usage.completion_tokens > 0

    loose = openai.OpenAI(base_url=guarded.base_url, api_key=guarded.api_key,
                          max_retries=0, timeout=120, _strict_response_validation=False)
    events = list(loose.completions.create(**kwargs, stream=True,
                                           stream_options={"include_usage": True}))
    texts = "".join(c.choices[0].text for c in events if c.choices)
    reasons = [c.choices[0].finish_reason for c in events if c.choices and c.choices[0].finish_reason]
    assert texts == "" and reasons == ["content_filter"], events
    assert events[-1].usage.completion_tokens == shown.usage.completion_tokens

    # A benign answer under output moderation comes through, streamed too.
    benign = guarded.completions.create(model=MODEL, prompt="The sky is", max_tokens=4)
    assert benign.choices[0].finish_reason in ("stop", "length")
    streamed = list(loose.completions.create(model=MODEL, prompt="The sky is", max_tokens=4,
                                             temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices)
