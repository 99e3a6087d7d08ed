"""Stored chat completions (`store: true`) and deleting a model alias, end
to end with the official `openai` SDK against the real `parlance serve`:

- store → list (paging, `model` and `metadata` filters) → retrieve →
  update the metadata → the stored messages → delete; a streamed answer
  is stored before its `[DONE]`;
- bad input is a 400 naming its param (`metadata` over its bounds, an
  unknown `after` cursor, a `limit` over 100), an unknown id a 404;
- another organisation's stored completion is a 404, and its list is its
  own;
- `DELETE /v1/models/{alias}`: a project key gets 403, a served model 400,
  an unknown one 404; the admin's delete answers `model.deleted` and the
  alias is gone from `/v1/models`.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import openai
import pytest

from conftest import _binary, _model


def _ask(client: openai.OpenAI, model: str, text: str, **extra):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        max_tokens=4,
        **extra,
    )


def test_store_list_retrieve_update_messages_delete(
    client: openai.OpenAI, loose_client: openai.OpenAI, model: str
):
    tag = uuid.uuid4().hex
    first = _ask(client, model, "Say hi.", store=True, metadata={"run": tag, "n": "1"})
    second = _ask(client, model, "Say bye.", store=True, metadata={"run": tag, "n": "2"})
    unstored = _ask(client, model, "Say nothing.", metadata={"run": tag})

    # A whole answer is stored before it is returned.
    got = client.chat.completions.retrieve(first.id)
    assert got.id == first.id
    assert got.model == first.model
    assert got.choices[0].message.content == first.choices[0].message.content
    assert got.usage == first.usage
    assert got.metadata == {"run": tag, "n": "1"}
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(unstored.id)

    # The list filters on metadata and model, and pages with after/limit.
    page = client.chat.completions.list(metadata={"run": tag}, limit=1)
    assert [c.id for c in page.data] == [first.id]
    assert page.has_more is True
    rest = client.chat.completions.list(metadata={"run": tag}, limit=1, after=page.data[0].id)
    assert [c.id for c in rest.data] == [second.id]
    assert rest.has_more is False
    newest = client.chat.completions.list(metadata={"run": tag}, order="desc")
    assert [c.id for c in newest.data] == [second.id, first.id]
    every = [c.id for c in client.chat.completions.list(metadata={"run": tag}, limit=1)]
    assert every == [first.id, second.id], "auto-paging follows last_id"
    assert client.chat.completions.list(metadata={"run": tag}, model="no-such-model").data == []
    assert [c.id for c in client.chat.completions.list(metadata={"run": tag, "n": "2"})] == [second.id]

    # Update replaces the metadata; the filters follow it.
    updated = client.chat.completions.update(first.id, metadata={"run": tag, "n": "3"})
    assert updated.metadata == {"run": tag, "n": "3"}
    assert [c.id for c in client.chat.completions.list(metadata={"run": tag, "n": "3"})] == [first.id]

    # The request's messages, with their ids, paged too (the loose client:
    # the SDK types a stored message's role as "assistant" only, while
    # OpenAI, like Parlance, answers the request's own roles).
    messages = loose_client.chat.completions.messages.list(first.id)
    assert [(m.role, m.content) for m in messages.data] == [
        ("system", "Be brief."),
        ("user", "Say hi."),
    ]
    ids = [m.id for m in messages.data]
    assert ids == [f"{first.id}-0", f"{first.id}-1"]
    after = loose_client.chat.completions.messages.list(first.id, after=ids[0], limit=5)
    assert [m.id for m in after.data] == [ids[1]]

    deleted = client.chat.completions.delete(first.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (first.id, True, "chat.completion.deleted")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete(first.id)
    assert [c.id for c in client.chat.completions.list(metadata={"run": tag})] == [second.id]
    client.chat.completions.delete(second.id)


def test_a_streamed_answer_is_stored_once_complete(loose_client: openai.OpenAI, model: str):
    tag = uuid.uuid4().hex
    stream = _ask(loose_client, model, "Count to three.", store=True, stream=True, metadata={"run": tag})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    completion_id = chunks[0].id
    # Stored before the last chunks and [DONE] were written: a client that
    # has read the whole stream can retrieve it at once.
    stored = loose_client.chat.completions.retrieve(completion_id)
    assert stored.choices[0].message.content == text
    assert stored.choices[0].finish_reason in ("stop", "length")
    assert stored.usage is not None and stored.usage.completion_tokens > 0
    assert stored.metadata == {"run": tag}
    loose_client.chat.completions.delete(completion_id)


def test_bad_input_names_its_param(loose_client: openai.OpenAI, model: str):
    cases = [
        ({"store": True, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"store": True, "metadata": {"k" * 65: "v"}}, "metadata"),
        ({"store": True, "metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"store": True, "metadata": {"k": 1}}, "metadata"),
        ({"store": "yes"}, "store"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as raised:
            _ask(loose_client, model, "hi", **extra)
        assert raised.value.body["param"] == param, extra
    with pytest.raises(openai.BadRequestError) as raised:
        loose_client.chat.completions.list(after="chatcmpl-no-such")
    assert raised.value.body["param"] == "after"
    with pytest.raises(openai.BadRequestError) as raised:
        loose_client.chat.completions.list(limit=101)
    assert raised.value.body["param"] == "limit"
    with pytest.raises(openai.NotFoundError):
        loose_client.chat.completions.messages.list("chatcmpl-no-such")
    with pytest.raises(openai.NotFoundError):
        loose_client.chat.completions.update("chatcmpl-no-such", metadata={})


def _key(database_url: str, *flags: str) -> str:
    made = subprocess.run(
        [_binary(), "keys", "create", "--database-url", database_url, *flags],
        check=True,
        capture_output=True,
        text=True,
    )
    return made.stdout.strip().splitlines()[-1]


def test_organisations_see_only_their_own_and_aliases_need_an_admin(serve_with, tmp_path):
    # A fresh database with keys (so the server asks for them) and a
    # configured alias of the served model (named after its file).
    database_url = f"sqlite://{tmp_path}/parlance.db?mode=rwc"
    admin = _key(database_url, "--admin")
    mine = _key(database_url)
    other = _key(database_url, "--org", "other")
    served = Path(_model()).stem
    config = tmp_path / "parlance.toml"
    config.write_text(
        f'[[gateway.models]]\nname = "{served}"\naliases = ["e2e-alias"]\n\n'
        '[[gateway.models.backends]]\nkind = "local"\n'
    )
    srv = serve_with("--database-url", database_url, "--config", str(config))
    url = f"{srv.root}/v1"
    as_mine = openai.OpenAI(base_url=url, api_key=mine, max_retries=0)
    as_other = openai.OpenAI(base_url=url, api_key=other, max_retries=0)
    as_admin = openai.OpenAI(base_url=url, api_key=admin, max_retries=0)

    stored = _ask(as_mine, served, "hi", store=True)
    assert as_mine.chat.completions.retrieve(stored.id).id == stored.id
    for call in (
        lambda: as_other.chat.completions.retrieve(stored.id),
        lambda: as_other.chat.completions.update(stored.id, metadata={"a": "b"}),
        lambda: as_other.chat.completions.delete(stored.id),
        lambda: as_other.chat.completions.messages.list(stored.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert as_other.chat.completions.list().data == []
    with pytest.raises(openai.BadRequestError):
        as_other.chat.completions.list(after=stored.id)
    assert [c.id for c in as_mine.chat.completions.list()] == [stored.id]

    # Deleting a model: only an alias, only by an admin of the default org.
    with pytest.raises(openai.PermissionDeniedError):
        as_mine.models.delete("e2e-alias")
    with pytest.raises(openai.PermissionDeniedError):
        as_other.models.delete("e2e-alias")
    with pytest.raises(openai.BadRequestError) as raised:
        as_admin.models.delete(served)
    assert raised.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        as_admin.models.delete("no-such-model")
    deleted = as_admin.models.delete("e2e-alias")
    assert (deleted.id, deleted.deleted, deleted.object) == ("e2e-alias", True, "model")
    audit = as_admin.get("/organization/audit_logs", cast_to=object)
    assert any(
        entry["type"] == "model.alias_deleted" and entry["target"]["id"] == "e2e-alias"
        for entry in audit["data"]
    ), audit
    assert "e2e-alias" not in [m.id for m in as_mine.models.list()]
    with pytest.raises(openai.NotFoundError):
        as_admin.models.retrieve("e2e-alias")
    assert served in [m.id for m in as_mine.models.list()]


def test_a_routed_stream_is_stored_too(serve_with, tmp_path):
    # A model with two backends is routed through the gateway (not the
    # direct engine path): its stream is relayed, and kept from its chunks.
    served = Path(_model()).stem
    backend = f'[[gateway.models.backends]]\nkind = "local"\nmodel = "{served}"\n'
    config = tmp_path / "parlance.toml"
    config.write_text(f'[[gateway.models]]\nname = "routed-e2e"\n\n{backend}\n{backend}')
    srv = serve_with("--config", str(config))
    client = openai.OpenAI(base_url=f"{srv.root}/v1", api_key="sk-test", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="routed-e2e",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=4,
            stream=True,
            store=True,
            metadata={"path": "routed"},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    stored = client.chat.completions.retrieve(chunks[0].id)
    assert stored.model == "routed-e2e"
    assert stored.choices[0].message.content == text
    assert stored.choices[0].finish_reason in ("stop", "length")
    assert stored.metadata == {"path": "routed"}
    messages = client.chat.completions.messages.list(chunks[0].id)
    assert [m.content for m in messages.data] == ["Say hi."]
