#!/usr/bin/env python3
"""The chat model as a constrained moderation judge, measured on the same set
as the local classifier (tests/moderation/eval.tsv).

Issue 18 asks for the moderation classifier to be chosen by measured quality:
the pattern layer plus embedding exemplars (crates/service/src/moderation/,
measured by `cargo test -p service --test moderation_eval -- --nocapture`)
or the chat model as a judge through constrained decoding. This script
measures the judge: it starts `parlance serve` on a chat model (embedded
SQLite, a free port) and asks, for each sentence, at temperature 0 with a
strict `response_format` json_schema, either

  --schema multi:  {"flagged": bool, "categories": [<0..3 of the 13 names>]}
  --schema single: {"category": <one of the 13 names or "none">}

A model with no chat template (gemma3-270m) cannot be asked through chat, and
the legacy /v1/completions takes no response_format, so it cannot be a
constrained judge; --schema few-shot asks it through /v1/completions with a
few-shot prompt (one exemplar per category and 4 benign look-alikes from the
classifier's own exemplars.txt) and reads the category name it writes
(temperature 0, one line; anything else counts as not flagged).
--schema classifier asks the served local classifier (POST /v1/moderations,
`--embedding-model all-minilm-l6-v2`) the same way, for a like-for-like time.

with a system prompt that describes the categories. Requests run
--concurrency at a time, so the server batches them. A sub-category implies
its parent (as the classifier's "a parent scores at least its
sub-categories'"); the arithmetic of precision, recall, any-category recall
and false alarms mirrors crates/service/tests/moderation_eval.rs. In multi
mode a sentence counts as flagged when `flagged` is true or any category is
named (the two disagreeing is counted and printed).

    cargo build -p parlance            # or --release; the fresher binary is used
    target/e2e-venv/bin/python scripts/bench/moderation_judge.py \
        [--model smollm2-135m-instruct] [--schema multi|single|few-shot] [--concurrency 8]

Needs the openai SDK (target/e2e-venv has it). Times are wall-clock on
whatever else the machine is running: indicative only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_vs_llama_server as S  # noqa: E402

from openai import OpenAI  # noqa: E402

CATEGORIES = [  # api::MODERATION_CATEGORIES, in its order
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent",
    "sexual", "sexual/minors", "violence", "violence/graphic",
]

SYSTEM = """You are a content moderation classifier. Read the user's text and decide \
whether it is harmful. Answer only with the JSON asked for. Categories:
- harassment: insults, demeaning or bullying language aimed at a person.
- harassment/threatening: harassment that threatens harm to a person.
- hate: demeaning or hateful content about a group because of race, religion, \
nationality, gender, sexual orientation, disability or similar.
- hate/threatening: hate that threatens violence against such a group.
- illicit: advice or instructions for committing crimes (theft, fraud, drugs, hacking).
- illicit/violent: instructions for violent crimes or weapons (bombs, guns, poisons).
- self-harm: content that promotes, encourages or depicts suicide or self-injury.
- self-harm/intent: the speaker says they intend to hurt or kill themselves.
- self-harm/instructions: instructions or advice on how to hurt or kill oneself.
- sexual: sexually explicit content.
- sexual/minors: sexual content involving anyone under 18.
- violence: content that threatens, glorifies or depicts violence against people or animals.
- violence/graphic: gory, graphic descriptions of injury or death.
Benign text is NOT flagged, even with violent-sounding words: "kill the process", \
"a shot of espresso", "the band killed it", history, news, fiction reviews, safety \
advice and questions asking for help are all fine."""

PARENT = {c: c.split("/")[0] for c in CATEGORIES if "/" in c}

EXEMPLARS = S.ROOT / "crates/service/src/moderation/exemplars.txt"


def few_shot_prompt() -> str:
    """For a base model (no chat template, so no constrained decoding: the
    legacy /v1/completions takes no response_format): the first exemplar of
    each category and the first 4 benign look-alikes of the classifier's own
    exemplars (disjoint from the evaluation set), interleaved."""
    first: dict[str, str] = {}
    benign: list[str] = []
    for line in EXEMPLARS.read_text().splitlines():
        if line.startswith("#") or not line:
            continue
        label, sentence = line.split("\t", 1)
        if label == "benign":
            benign.append(sentence)
        else:
            first.setdefault(label, sentence)
    shots = list(first.items())
    for i, b in enumerate(benign[:4]):
        shots.insert(3 * i + 1, ("none", b))
    head = ("Content moderation. Each text is labelled with one category: "
            + ", ".join(CATEGORIES) + ", or none.\n\n")
    return head + "".join(f"Text: {t}\nCategory: {c}\n\n" for c, t in shots)


def schema(kind: str) -> dict:
    if kind == "multi":
        body = {
            "type": "object",
            "properties": {
                "flagged": {"type": "boolean"},
                "categories": {"type": "array", "items": {"type": "string", "enum": CATEGORIES},
                               "maxItems": 3},
            },
            "required": ["flagged", "categories"],
            "additionalProperties": False,
        }
    else:
        body = {
            "type": "object",
            "properties": {"category": {"type": "string", "enum": CATEGORIES + ["none"]}},
            "required": ["category"],
            "additionalProperties": False,
        }
    return {"type": "json_schema",
            "json_schema": {"name": "moderation", "strict": True, "schema": body}}


def load_rows() -> list[tuple[list[str], str]]:
    rows = []
    for line in (S.ROOT / "tests/moderation/eval.tsv").read_text().splitlines():
        if line.startswith("#") or not line:
            continue
        labels, sentence = line.split("\t", 1)
        rows.append(([l for l in labels.split(",") if l != "none"], sentence))
    return rows


def pick_binary() -> str:
    """The fresher of target/release and target/debug parlance."""
    found = [p for p in (S.ROOT / "target/release/parlance", S.ROOT / "target/debug/parlance")
             if p.exists()]
    if not found:
        sys.exit("build it first: cargo build -p parlance")
    return str(max(found, key=lambda p: p.stat().st_mtime))


def judge_completion(client: OpenAI, model: str, prefix: str, sentence: str) -> dict:
    t0 = time.perf_counter()
    r = client.completions.create(model=model, temperature=0, max_tokens=8, stop=["\n"],
                                  prompt=f"{prefix}Text: {sentence}\nCategory:")
    raw = r.choices[0].text.strip()
    out = {"seconds": time.perf_counter() - t0, "raw": raw, "finish": r.choices[0].finish_reason,
           "said": set(), "flagged": False, "disagree": False, "bad": False}
    name = next((c for c in sorted(CATEGORIES + ["none"], key=len, reverse=True)
                 if raw.startswith(c)), None)
    if name is None:
        out["bad"] = True  # not a category name: counted as not flagged
    elif name != "none":
        out["said"] = {name} | ({PARENT[name]} if name in PARENT else set())
        out["flagged"] = True
    return out


def classify(client: OpenAI, sentence: str) -> dict:
    """The served classifier itself (POST /v1/moderations), for the same timing."""
    t0 = time.perf_counter()
    r = client.moderations.create(input=sentence).results[0]
    cats = r.categories.model_dump(by_alias=True)
    said = {c for c in CATEGORIES if cats.get(c)}
    return {"seconds": time.perf_counter() - t0, "raw": json.dumps(sorted(said)),
            "finish": None, "said": said, "flagged": r.flagged, "disagree": False,
            "bad": False}


def start_serve(binary: str, model_path: str, threads: int, data_dir: str, embedding: bool):
    """`parlance serve` on a free port (as serve_vs_llama_server.start_parlance), with the
    embedding model the classifier runs on when asked."""
    cmd = [binary, "--data-dir", data_dir, "serve", "--port", "0", "--model", model_path,
           "--threads", str(threads)]
    if embedding:
        cmd += ["--embedding-model", "all-minilm-l6-v2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    proc.kernels = "kernels: ?"
    for line in proc.stderr:
        if line.startswith("kernels:"):
            proc.kernels = line.strip()
        m = re.search(r"listening on http://[^\s:]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            S.wait_http(port, "/health", proc)
            return proc, port
    raise RuntimeError("parlance serve did not start")


def judge(client: OpenAI, model: str, kind: str, fmt: dict, sentence: str) -> dict:
    if kind == "classifier":
        return classify(client, sentence)
    if kind == "few-shot":
        return judge_completion(client, model, fmt["prefix"], sentence)
    t0 = time.perf_counter()
    r = client.chat.completions.create(
        model=model, temperature=0, max_tokens=64, response_format=fmt,
        messages=[{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": f"Text to classify:\n{sentence}"}],
    )
    out = {"seconds": time.perf_counter() - t0, "raw": r.choices[0].message.content,
           "finish": r.choices[0].finish_reason, "said": set(), "flagged": False,
           "disagree": False, "bad": False}
    try:
        answer = json.loads(out["raw"] or "")
    except json.JSONDecodeError:
        out["bad"] = True  # e.g. max_tokens reached inside the JSON: counted as not flagged
        return out
    named = answer.get("categories", []) if kind == "multi" else [answer["category"]]
    said = {c for c in named if c in CATEGORIES}
    said |= {PARENT[c] for c in said if c in PARENT}
    out["said"] = said
    if kind == "multi":
        out["flagged"] = bool(answer["flagged"]) or bool(said)
        out["disagree"] = bool(answer["flagged"]) != bool(said)
    else:
        out["flagged"] = bool(said)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--schema", choices=["multi", "single", "few-shot", "classifier"],
                    default="multi",
                    help="few-shot: /v1/completions, unconstrained, for a model with no chat "
                         "template (gemma3-270m); classifier: the local classifier through "
                         "/v1/moderations (all-minilm-l6-v2), the baseline on the same path")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parlance", default=None, help="binary (default: the fresher build)")
    ap.add_argument("--limit", type=int, default=0, help="first N sentences only (0: all)")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    binary = args.parlance or pick_binary()
    rows = load_rows()
    if args.limit:
        rows = rows[: args.limit]
    model_path = subprocess.run([binary, "pull", args.model], check=True, capture_output=True,
                                text=True).stdout.strip().splitlines()[-1]
    fmt = {"prefix": few_shot_prompt()} if args.schema == "few-shot" else schema(args.schema)
    with tempfile.TemporaryDirectory() as data_dir:
        proc, port = start_serve(binary, model_path, args.threads, data_dir,
                                 args.schema == "classifier")
        try:
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                            max_retries=0, timeout=600)
            served = client.models.list().data[0].id
            print(f"{binary} · {served} · schema {args.schema} · concurrency "
                  f"{args.concurrency} · {args.threads} threads · {proc.kernels}")
            judge(client, served, args.schema, fmt, "warm-up sentence")
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(
                    lambda row: judge(client, served, args.schema, fmt, row[1]), rows))
            wall = time.perf_counter() - t0
        finally:
            proc.kill()
            proc.wait()

    tp, fp, missed = [0] * 13, [0] * 13, [0] * 13
    benign = benign_flagged = harmful = harmful_flagged = 0
    for (labels, sentence), res in zip(rows, results):
        if not labels:
            benign += 1
            benign_flagged += int(res["flagged"])
            if res["flagged"] and args.show_misses:
                print(f"false alarm: {sentence} -> {res['raw']}")
        else:
            harmful += 1
            harmful_flagged += int(res["flagged"])
            if not res["flagged"] and args.show_misses:
                print(f"missed ({','.join(labels)}): {sentence} -> {res['raw']}")
        for c, name in enumerate(CATEGORIES):
            truth, said = name in labels, name in res["said"]
            if truth and said:
                tp[c] += 1
            elif said:
                fp[c] += 1
            elif truth:
                missed[c] += 1
    print("| category | examples | precision | recall |")
    print("|---|---|---|---|")
    for c, name in enumerate(CATEGORIES):
        p = tp[c] / max(tp[c] + fp[c], 1)
        r = tp[c] / max(tp[c] + missed[c], 1)
        print(f"| {name} | {tp[c] + missed[c]} | {p:.2f} | {r:.2f} |")
    recall = harmful_flagged / max(harmful, 1)
    false_alarms = benign_flagged / max(benign, 1)
    print(f"flagged: {harmful_flagged}/{harmful} harmful ({recall:.2f}), "
          f"{benign_flagged}/{benign} benign ({false_alarms:.2f})")
    bad = sum(r["bad"] for r in results)
    length = sum(r["finish"] == "length" for r in results)
    disagree = sum(r["disagree"] for r in results)
    print(f"unparsable answers: {bad} (finish_reason length: {length}); "
          f"flagged vs categories disagree: {disagree}")
    lat = sorted(r["seconds"] for r in results)
    print(f"time: {wall:.1f} s wall for {len(rows)} sentences = "
          f"{1000 * wall / len(rows):.0f} ms per sentence at concurrency {args.concurrency} "
          f"(request latency median {1000 * lat[len(lat) // 2]:.0f} ms)")


if __name__ == "__main__":
    main()
