"""Billing end to end, on the real binary with its real database (SQLite, and
PostgreSQL when PARLANCE_TEST_POSTGRES_URL is set), driven by the official
`openai` SDK:

- cost math: for streamed, non-streamed and cancelled requests, each ledger
  row holds exactly the tokens the client was told about, and its cost is
  those tokens at the reference prices;
- budgets: 200 concurrent requests against a budget that admits exactly N
  worst cases: N succeed, the rest get 429 `insufficient_quota`, and the
  spend stays within the budget;
- crash: the server is `kill -9`ed during 50 concurrent streams and started
  again: every request that produced tokens is in the ledger exactly once.

Each test runs its own server(s) on a fresh data directory and database.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest

from conftest import Server, _binary, _die_with_parent, _model

# The reference prices, in picodollars per token: $0.01 and $0.03 per 1K.
INPUT_UNITS = 10_000_000
OUTPUT_UNITS = 30_000_000
UNITS_PER_DOLLAR = 10**12


def usd(units: int) -> str:
    """Picodollars as an exact decimal string of US dollars."""
    whole, frac = divmod(units, UNITS_PER_DOLLAR)
    return f"{whole}.{frac:012d}"


class Database:
    """A fresh database for one test: an SQLite file in the data directory,
    or a PostgreSQL database created here and dropped after."""

    def __init__(self, kind: str, data_dir: str):
        self.kind = kind
        self.data_dir = data_dir
        self.admin_url = os.environ.get("PARLANCE_TEST_POSTGRES_URL", "")
        if kind == "postgres":
            self.name = f"parlance_e2e_{uuid.uuid4().hex[:12]}"
            base = self.admin_url.rsplit("/", 1)[0]
            self.url = f"{base}/{self.name}"
            self._psql(self.admin_url, f"CREATE DATABASE {self.name}")
        else:
            self.url = f"sqlite://{data_dir}/parlance.db?mode=rwc"

    @staticmethod
    def _psql(url: str, sql: str) -> str:
        out = subprocess.run(
            ["psql", url, "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-c", sql],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def rows(self, sql: str) -> list[tuple]:
        """Rows of a query; every value comes back as text."""
        if self.kind == "postgres":
            text = self._psql(self.url, sql)
            return [tuple(line.split("\t")) for line in text.splitlines() if line]
        with sqlite3.connect(f"{self.data_dir}/parlance.db") as conn:
            return [tuple("" if v is None else str(v) for v in row) for row in conn.execute(sql)]

    def drop(self) -> None:
        if self.kind == "postgres":
            self._psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def instance(request):
    if request.param == "postgres" and not os.environ.get("PARLANCE_TEST_POSTGRES_URL"):
        pytest.skip("PARLANCE_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped")
    data_dir = tempfile.mkdtemp(prefix="parlance-billing-")
    db = Database(request.param, data_dir)
    inst = Instance(data_dir, db)
    try:
        yield inst
    finally:
        inst.stop()
        db.drop()
        shutil.rmtree(data_dir, ignore_errors=True)


# The lease of the servers these tests start (`instance_lease_secs`).
LEASE_SECS = 2


class Instance:
    """The binary on one data directory and database: CLI calls and servers."""

    def __init__(self, data_dir: str, db: Database):
        self.data_dir = data_dir
        self.db = db
        self.server: Server | None = None

    def cli(self, *args: str) -> str:
        cmd = [_binary(), "--data-dir", self.data_dir, *args, "--database-url", self.db.url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{cmd} failed:\n{out.stderr}"
        return out.stdout

    def create_key(self, org: str, project: str) -> str:
        return self.cli("keys", "create", "--org", org, "--project", project).strip()

    def start(self) -> Server:
        cmd = [
            _binary(),
            "--data-dir",
            self.data_dir,
            "serve",
            "--port",
            "0",
            "--model",
            _model(),
            "--threads",
            "2",
            "--database-url",
            self.db.url,
        ]
        # A short lease: a killed instance's requests are recovered (by its
        # restart's sweep) seconds after the kill, not the default 30 s.
        env = {**os.environ, "PARLANCE_INSTANCE_LEASE_SECS": str(LEASE_SECS)}
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.server = Server(proc, self.data_dir)
        self.server.wait_ready()
        return self.server

    def kill(self) -> None:
        """`kill -9`: no shutdown path runs."""
        assert self.server is not None
        self.server.proc.kill()
        self.server.proc.wait(timeout=30)
        self.server = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self, key: str, **kw) -> openai.OpenAI:
        assert self.server is not None
        return openai.OpenAI(
            base_url=f"{self.server.root}/v1", api_key=key, max_retries=0, timeout=120, **kw
        )

    def async_client(self, key: str) -> openai.AsyncOpenAI:
        assert self.server is not None
        return openai.AsyncOpenAI(
            base_url=f"{self.server.root}/v1", api_key=key, max_retries=0, timeout=300
        )

    def admin_get(self, key: str, path: str):
        """GET an admin route; JSON numbers are read as exact decimals."""
        assert self.server is not None
        request = urllib.request.Request(
            f"{self.server.root}{path}", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read(), parse_float=decimal.Decimal)

    def ledger(self, where: str = "1 = 1") -> list[dict]:
        cols = [
            "request_id",
            "status",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "project_id",
            "finish_reason",
        ]
        rows = self.db.rows(f"SELECT {', '.join(cols)} FROM usage_ledger WHERE {where}")
        out = []
        for row in rows:
            rec = dict(zip(cols, row))
            for k in ("prompt_tokens", "completion_tokens", "cost"):
                rec[k] = int(rec[k])
            out.append(rec)
        return out


MESSAGES = [{"role": "user", "content": "Name three colours."}]


def test_ledger_equals_usage_returned_times_prices(instance):
    key = instance.create_key("acme", "math")
    instance.start()
    client = instance.client(key)
    model = client.models.list().data[0].id
    told: dict[str, tuple[int, int]] = {}

    for i in range(3):
        rid = f"plain-{i}"
        done = client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            max_tokens=5 + 7 * i,
            temperature=0,
            extra_headers={"x-request-id": rid},
        )
        told[rid] = (done.usage.prompt_tokens, done.usage.completion_tokens)

    for i in range(3):
        rid = f"stream-{i}"
        usage = None
        stream = client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            max_tokens=4 + 5 * i,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": rid},
        )
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
        assert usage is not None, "the stream ended without its usage chunk"
        told[rid] = (usage.prompt_tokens, usage.completion_tokens)

    # Cancelled: the client leaves after three chunks of a long answer.
    for i in range(2):
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Tell me a long story about a dragon."}],
            max_tokens=400,
            stream=True,
            extra_headers={"x-request-id": f"cancel-{i}"},
        )
        for n, _ in enumerate(stream):
            if n == 3:
                break
        stream.close()

    # Settlement of a cancelled stream happens when the server notices.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(instance.ledger()) == 8:
            break
        time.sleep(0.1)
    rows = {r["request_id"]: r for r in instance.ledger()}
    assert len(rows) == 8, rows

    for rid, (prompt, completion) in told.items():
        row = rows[rid]
        assert row["status"] == "ok", row
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion), row
        assert row["cost"] == prompt * INPUT_UNITS + completion * OUTPUT_UNITS, row
    for i in range(2):
        row = rows[f"cancel-{i}"]
        assert row["status"] == "cancelled", row
        # Billed for what was generated: at least what the client saw, at
        # most the limit it asked for.
        assert 1 <= row["completion_tokens"] <= 400, row
        assert (
            row["cost"]
            == row["prompt_tokens"] * INPUT_UNITS + row["completion_tokens"] * OUTPUT_UNITS
        ), row
    # Nothing is left reserved.
    assert instance.db.rows("SELECT COUNT(*) FROM reservations") == [("0",)]

    # The usage API, the costs API and the invoice agree with the ledger.
    admin = instance.cli("keys", "create", "--org", "acme", "--project", "math", "--admin").strip()
    total_units = sum(r["cost"] for r in rows.values())
    total = decimal.Decimal(total_units) / UNITS_PER_DOLLAR
    start = int(time.time()) - 86400
    usage = instance.admin_get(admin, f"/v1/organization/usage/completions?start_time={start}")
    results = [r for b in usage["data"] for r in b["results"]]
    assert sum(r["input_tokens"] for r in results) == sum(r["prompt_tokens"] for r in rows.values())
    assert sum(r["output_tokens"] for r in results) == sum(
        r["completion_tokens"] for r in rows.values()
    )
    assert sum(r["num_model_requests"] for r in results) == 8
    costs = instance.admin_get(
        admin, f"/v1/organization/costs?start_time={start}&group_by=line_item"
    )
    amounts = [r["amount"]["value"] for b in costs["data"] for r in b["results"]]
    assert sum(amounts) == total, (amounts, total)
    month = time.strftime("%Y-%m", time.gmtime())
    invoice = instance.admin_get(admin, f"/v1/organization/invoices/{month}")
    assert decimal.Decimal(str(invoice["total"])) == total, invoice
    assert sum(line["requests"] for line in invoice["lines"]) == 8


def test_budget_admits_exactly_n_of_200_concurrent(instance):
    probe_key = instance.create_key("acme", "probe")
    key = instance.create_key("acme", "budgeted")
    instance.start()
    client = instance.client(probe_key)
    model = client.models.list().data[0].id
    probe = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=1, temperature=0
    )
    assert probe.usage.completion_tokens == 1
    worst = probe.usage.prompt_tokens * INPUT_UNITS + 1 * OUTPUT_UNITS
    admits = 10
    budget = admits * worst + worst - 1
    instance.cli("budget", "set", "--org", "acme", "--project", "budgeted", "--hard", usd(budget))

    async def one(aclient, i):
        try:
            done = await aclient.chat.completions.create(
                model=model,
                messages=MESSAGES,
                max_tokens=1,
                temperature=0,
                extra_headers={"x-request-id": f"budget-{i}"},
            )
            return ("ok", done.usage.prompt_tokens, done.usage.completion_tokens)
        except openai.RateLimitError as err:
            return ("quota", err.code, err.status_code)

    async def burst():
        aclient = instance.async_client(key)
        try:
            return await asyncio.gather(*(one(aclient, i) for i in range(200)))
        finally:
            await aclient.close()

    results = asyncio.run(burst())
    ok = [r for r in results if r[0] == "ok"]
    refused = [r for r in results if r[0] == "quota"]
    assert len(ok) == admits, f"{len(ok)} succeeded, expected {admits}"
    assert len(refused) == 200 - admits
    assert all(r[1] == "insufficient_quota" and r[2] == 429 for r in refused), refused[:3]
    assert all((r[1], r[2]) == (probe.usage.prompt_tokens, 1) for r in ok), ok

    project = instance.db.rows("SELECT id FROM projects WHERE name = 'budgeted'")[0][0]
    rows = instance.ledger(f"project_id = '{project}'")
    assert len(rows) == admits
    spent = sum(r["cost"] for r in rows)
    assert spent == admits * worst
    assert spent <= budget
    counters = instance.db.rows(
        f"SELECT spent, reserved FROM budget_counters WHERE scope_id = '{project}'"
    )
    assert counters == [(str(spent), "0")], counters
    shown = instance.cli("budget", "show", "--org", "acme")
    assert "held $0.000000" in shown, shown


def test_kill_9_during_50_streams_loses_and_duplicates_nothing(instance):
    key = instance.create_key("acme", "crash")
    instance.start()
    client = instance.client(key)
    model = client.models.list().data[0].id
    streams = 50
    received = [0] * streams
    started = threading.Barrier(streams + 1)
    first_tokens = threading.Semaphore(0)

    def run(i):
        started.wait()
        try:
            stream = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"Count slowly from {i} upwards."}],
                max_tokens=300,
                stream=True,
                extra_headers={"x-request-id": f"crash-{i}"},
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received[i] += 1
                    if received[i] == 1:
                        first_tokens.release()
        except Exception:
            pass  # the server is killed under it

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    started.wait()
    # Kill once most streams are producing tokens (all 50, or 40 within 4 min).
    deadline = time.monotonic() + 240
    got = 0
    while got < streams and time.monotonic() < deadline:
        if first_tokens.acquire(timeout=1):
            got += 1
        elif got >= 40:
            break
    assert got >= 40, f"only {got} streams produced a token"
    instance.kill()
    for t in threads:
        t.join(timeout=30)
    produced = {f"crash-{i}" for i in range(streams) if received[i] > 0}
    assert len(produced) >= 40

    # Restart: once the killed instance's lease has run out, a sweep of the
    # new one settles what the crash left open (never before: another live
    # instance's requests would look the same).
    instance.start()
    deadline = time.monotonic() + LEASE_SECS * 10
    while True:
        left = instance.db.rows("SELECT COUNT(*) FROM reservations")
        if left == [("0",)] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    rows = instance.ledger("request_id LIKE 'crash-%'")
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a request id is in the ledger twice"
    by_id = {r["request_id"]: r for r in rows}
    missing = produced - set(by_id)
    assert not missing, f"requests that produced tokens are missing: {sorted(missing)}"
    for rid, row in by_id.items():
        assert row["status"] in ("interrupted", "ok", "cancelled"), row
        assert row["completion_tokens"] <= 300, row
        assert (
            row["cost"]
            == row["prompt_tokens"] * INPUT_UNITS + row["completion_tokens"] * OUTPUT_UNITS
        ), row
    interrupted = [r for r in rows if r["status"] == "interrupted"]
    assert interrupted, "no request was interrupted: the kill came too late"
    # Progress was recorded: most interrupted requests are billed tokens.
    assert sum(1 for r in interrupted if r["completion_tokens"] > 0) >= len(interrupted) // 2
    assert instance.db.rows("SELECT COUNT(*) FROM reservations") == [("0",)]
    # A second restart finds nothing more to settle and writes no new row.
    instance.stop()
    instance.start()
    assert len(instance.ledger("request_id LIKE 'crash-%'")) == len(rows)
