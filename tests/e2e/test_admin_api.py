"""The admin API's projects, users and invites, end to end with the official
`openai` SDK's admin resources (`client.admin.organization.*`) against the
real `parlance serve`, on SQLite and on PostgreSQL (when
PARLANCE_TEST_POSTGRES_URL names a server):

- projects: create (a 405 before), modify, archive; an archived project's
  key is refused with a 401 that says so, it takes no new key, it leaves
  the default list; the default project cannot be archived;
- users: list with `after`/`limit`/`emails`, retrieve, change the role,
  remove; the last owner can be neither demoted nor removed;
- invites: create (the one-time link answered once), list, retrieve,
  delete; the web app's sign-up with the link joins with the invited role
  under the default `approval` policy (no approval needed), once; an
  accepted invite cannot be deleted, a deleted one's link is dead;
- every change is in the audit log; a project key gets 403.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

import openai
import pytest

from conftest import Server, _binary, _die_with_parent, _model

ADMIN_KEY = "sk-admin-e2e-" + uuid.uuid4().hex


class Db:
    """A fresh database: an SQLite file, or a PostgreSQL database made here
    and dropped after."""

    def __init__(self, kind: str, data_dir: str):
        self.kind = kind
        self.admin_url = os.environ.get("PARLANCE_TEST_POSTGRES_URL", "")
        if kind == "postgres":
            self.name = f"parlance_admin_{uuid.uuid4().hex[:12]}"
            self.url = f"{self.admin_url.rsplit('/', 1)[0]}/{self.name}"
            self._psql(f"CREATE DATABASE {self.name}")
        else:
            self.url = f"sqlite://{data_dir}/parlance.db?mode=rwc"

    def _psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True,
            capture_output=True,
        )

    def drop(self) -> None:
        if self.kind == "postgres":
            self._psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class App:
    """One server with an admin key, and plain HTTP to it."""

    def __init__(self, server: Server):
        self.server = server
        self.admin = openai.OpenAI(
            base_url=f"{server.root}/v1",
            admin_api_key=ADMIN_KEY,
            max_retries=0,
            timeout=60,
        )

    def call(self, method: str, path: str, body=None, key=None, cookie=None):
        """Status and JSON body of one request."""
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        if cookie:
            headers["cookie"] = cookie
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.server.root}{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                return resp.status, json.loads(resp.read() or b"null"), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null"), err.headers

    def sign_up(self, email: str, invite: str | None = None):
        body = {"email": email, "name": email.split("@")[0], "password": "correct horse"}
        if invite is not None:
            body["invite"] = invite
        return self.call("POST", "/api/auth/signup", body)


@pytest.fixture(params=["sqlite", "postgres"])
def app(request):
    if request.param == "postgres" and not os.environ.get("PARLANCE_TEST_POSTGRES_URL"):
        pytest.skip("PARLANCE_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped")
    data_dir = tempfile.mkdtemp(prefix="parlance-admin-")
    db = Db(request.param, data_dir)
    cmd = [_binary(), "--data-dir", data_dir, "serve", "--port", "0", "--model", _model()]
    cmd += ["--threads", "1", "--database-url", db.url]
    env = {**os.environ, "PARLANCE_ADMIN_KEY": ADMIN_KEY}
    env.pop("PARLANCE_SIGNUP", None)  # the default: approval
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    server = Server(proc, data_dir)
    try:
        server.wait_ready()
        yield App(server)
    finally:
        server.stop()
        db.drop()
        shutil.rmtree(data_dir, ignore_errors=True)


def audit_types(app: App) -> list[str]:
    status, page, _ = app.call("GET", "/v1/organization/audit_logs?limit=100", key=ADMIN_KEY)
    assert status == 200, page
    return [entry["type"] for entry in page["data"]]


def chat(app: App, key: str):
    body = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1,
    }
    return app.call("POST", "/v1/chat/completions", body, key=key)


def test_projects_create_modify_archive(app):
    org = app.admin.admin.organization
    project = org.projects.create(name="research")
    assert project.object == "organization.project"
    assert project.name == "research" and project.status == "active"
    assert project.archived_at is None
    assert org.projects.retrieve(project.id).name == "research"
    renamed = org.projects.update(project.id, name="research-2")
    assert renamed.name == "research-2"

    # A key of the project works until the project is archived.
    status, key, _ = app.call(
        "POST", f"/v1/organization/projects/{project.id}/api_keys", {"name": "k"}, ADMIN_KEY
    )
    assert status == 200, key
    status, answer, _ = chat(app, key["value"])
    assert status == 200, answer

    archived = org.projects.archive(project.id)
    assert archived.status == "archived" and archived.archived_at is not None
    status, answer, _ = chat(app, key["value"])
    assert status == 401, answer
    assert "archived" in answer["error"]["message"]
    status, answer, _ = app.call(
        "POST", f"/v1/organization/projects/{project.id}/api_keys", {}, ADMIN_KEY
    )
    assert status == 400 and "archived" in answer["error"]["message"], answer
    with pytest.raises(openai.BadRequestError):
        org.projects.update(project.id, name="again")
    # Archiving again answers it as it is.
    assert org.projects.archive(project.id).archived_at == archived.archived_at

    active = [p.id for p in org.projects.list()]
    assert project.id not in active and len(active) == 1
    everything = [p.id for p in org.projects.list(include_archived=True)]
    assert project.id in everything

    [default] = active
    with pytest.raises(openai.BadRequestError) as err:
        org.projects.archive(default)
    assert "default project" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        org.projects.update(default, name="renamed")
    assert "default project" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        org.projects.create(name="  ")
    assert err.value.body["param"] == "name"
    with pytest.raises(openai.BadRequestError) as err:
        org.projects.create(name="x", geography="eu")
    assert err.value.body["param"] == "geography"
    with pytest.raises(openai.NotFoundError):
        org.projects.archive("proj_nope")

    types = audit_types(app)
    for kind in ["project.created", "project.updated", "project.archived"]:
        assert kind in types, types


def test_users_and_invites(app):
    org = app.admin.admin.organization
    status, owner, _ = app.sign_up("owner@example.com")
    assert status == 200, owner
    [first] = list(org.users.list())
    assert first.object == "organization.user"
    assert first.email == "owner@example.com" and first.role == "owner"
    assert org.users.retrieve(first.id).email == "owner@example.com"

    # The last owner stays.
    with pytest.raises(openai.BadRequestError) as err:
        org.users.update(first.id, role="member")
    assert "last owner" in err.value.message
    with pytest.raises(openai.BadRequestError):
        org.users.delete(first.id)

    # Without an invite, a second person waits for approval.
    status, pending, _ = app.sign_up("stranger@example.com")
    assert status == 202 and pending["status"] == "pending", pending

    invite = org.invites.create(email="Ada@Example.com", role="admin")
    assert invite.object == "organization.invite"
    assert invite.status == "pending" and invite.email == "ada@example.com"
    assert invite.role == "admin" and invite.accepted_at is None
    link = invite.model_extra["invite_url"]
    token = invite.model_extra["token"]
    assert link.endswith(f"invite={token}")
    assert [i.id for i in org.invites.list()] == [invite.id]
    again = org.invites.retrieve(invite.id)
    assert again.status == "pending" and "token" not in (again.model_extra or {})
    with pytest.raises(openai.BadRequestError) as err:
        org.invites.create(email="ada@example.com", role="member")
    assert err.value.body["param"] == "email"
    with pytest.raises(openai.BadRequestError) as err:
        org.invites.create(email="bob@example.com", role="emperor")
    assert err.value.body["param"] == "role"

    # The link works for the invited email only, once, with no approval.
    status, answer, _ = app.sign_up("eve@example.com", token)
    assert status == 400 and answer["error"]["param"] == "email", answer
    status, ada, headers = app.sign_up("ada@example.com", token)
    assert status == 200, ada
    cookie = headers["set-cookie"].split(";")[0]
    status, me, _ = app.call("GET", "/api/me", cookie=cookie)
    assert status == 200 and me["role"] == "admin", me
    status, answer, _ = app.sign_up("ada2@example.com", token)
    assert status == 400 and answer["error"]["param"] == "invite", answer
    accepted = org.invites.retrieve(invite.id)
    assert accepted.status == "accepted" and accepted.accepted_at is not None
    with pytest.raises(openai.BadRequestError):
        org.invites.delete(invite.id)

    # A deleted invite's link is dead.
    doomed = org.invites.create(email="carl@example.com", role="reader")
    deleted = org.invites.delete(doomed.id)
    assert deleted.object == "organization.invite.deleted" and deleted.deleted
    with pytest.raises(openai.NotFoundError):
        org.invites.retrieve(doomed.id)
    status, answer, _ = app.sign_up("carl@example.com", doomed.model_extra["token"])
    assert status == 400 and answer["error"]["param"] == "invite", answer

    # Users: pages, the email filter, roles, removal.
    page = org.users.list(limit=1)
    assert [u.email for u in page.data] == ["owner@example.com"] and page.has_more
    rest = org.users.list(limit=1, after=first.id)
    assert [u.email for u in rest.data] == ["ada@example.com"]
    [found] = org.users.list(emails=["ADA@example.com"]).data
    assert found.role == "admin"
    assert org.users.update(found.id, role="owner").role == "owner"
    # With a second owner, the first may step down.
    assert org.users.update(first.id, role="reader").role == "reader"
    with pytest.raises(openai.BadRequestError) as err:
        org.users.update(first.id, role="king")
    assert err.value.body["param"] == "role"
    gone = org.users.delete(first.id)
    assert gone.object == "organization.user.deleted" and gone.deleted
    assert [u.email for u in org.users.list()] == ["ada@example.com"]
    with pytest.raises(openai.NotFoundError):
        org.users.retrieve(first.id)

    types = audit_types(app)
    for kind in [
        "invite.created",
        "invite.accepted",
        "invite.deleted",
        "member.role_changed",
        "member.removed",
    ]:
        assert kind in types, types


def test_a_project_key_may_not_use_them(app):
    [default] = [p.id for p in app.admin.admin.organization.projects.list()]
    status, key, _ = app.call(
        "POST", f"/v1/organization/projects/{default}/api_keys", {"name": "p"}, ADMIN_KEY
    )
    assert status == 200, key
    for method, path, body in [
        ("POST", "/v1/organization/projects", {"name": "x"}),
        ("POST", f"/v1/organization/projects/{default}/archive", None),
        ("GET", "/v1/organization/users", None),
        ("POST", "/v1/organization/invites", {"email": "a@b.c", "role": "member"}),
        ("GET", "/v1/organization/invites", None),
    ]:
        status, answer, _ = app.call(method, path, body, key=key["value"])
        assert status == 403, (path, answer)
        assert answer["error"]["type"] == "permission_error"


def test_the_admin_page_invites_with_a_link_it_shows_once(app):
    status, _, headers = app.sign_up("boss@example.com")
    assert status == 200
    owner = headers["set-cookie"].split(";")[0]
    status, invite, _ = app.call(
        "POST", "/api/admin/invites", {"email": "mia@example.com", "role": "reader"}, cookie=owner
    )
    assert status == 200, invite
    token = invite["invite_url"].split("invite=")[1]
    status, page, _ = app.call("GET", "/api/admin/invites", cookie=owner)
    assert [(i["email"], i["status"]) for i in page["data"]] == [("mia@example.com", "pending")]
    assert "invite_url" not in page["data"][0]
    status, mia, headers = app.sign_up("mia@example.com", token)
    assert status == 200, mia
    reader = headers["set-cookie"].split(";")[0]
    status, me, _ = app.call("GET", "/api/me", cookie=reader)
    assert me["role"] == "reader", me
    # A reader may not invite; an accepted invite cannot be deleted.
    status, answer, _ = app.call(
        "POST", "/api/admin/invites", {"email": "x@example.com", "role": "member"}, cookie=reader
    )
    assert status == 403, answer
    status, answer, _ = app.call("DELETE", f"/api/admin/invites/{invite['id']}", cookie=owner)
    assert status == 400, answer
    status, other, _ = app.call(
        "POST", "/api/admin/invites", {"email": "zed@example.com", "role": "member"}, cookie=owner
    )
    status, answer, _ = app.call("DELETE", f"/api/admin/invites/{other['id']}", cookie=owner)
    assert status == 200 and answer["deleted"], answer
