#!/usr/bin/env python3
"""Query a running reference llama-server for greedy-decoding fixtures.

Called by greedy_fixtures.sh (which starts and stops the server); standard
library only. For each prompt it records the prompt's token ids (/tokenize
with add_special and parse_special) and a 64-token greedy continuation that
ignores end-of-sequence, with the top-2 candidates of every step as
probabilities of the full softmax over the raw logits (/completion,
n_probs=2, post_sampling_probs=false).
"""

import argparse
import hashlib
import json
import math
import os
import sys
import urllib.request

N_PREDICT = 64

# (text, chat-templated?) per model family. Templated prompts use the model's
# chat turn format; the others are raw continuations.
PROMPTS = [
    ("What is the capital of France?", True),
    ("Once upon a time, in a small village by the sea,", False),
    ('def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n', False),
    ("Here is a list of five fruits:\n1.", False),
    ("Le chat est assis sur le canapé et", False),
    ("请用一句话介绍一下你自己。", True),
    ("Write a haiku about autumn leaves.", True),
]

TEMPLATES = {
    "smollm2": "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
    "gemma": "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n",
}


def post(url, body):
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.load(resp)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


GREEDY = {
    "temperature": 0,
    "top_k": 1,
    "top_p": 1.0,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "dry_multiplier": 0.0,
    "ignore_eos": True,
    "cache_prompt": False,
    "n_probs": 2,
    "post_sampling_probs": False,
    "return_tokens": True,
}


def top2_of(entry):
    return [[c["id"], math.exp(c["logprob"])] for c in entry["top_logprobs"][:2]]


class Vocab:
    """Each token's bytes as llama-server appends them to the generated text
    (control tokens add nothing, since the server runs without --special)."""

    def __init__(self, model_path, gguf_py):
        sys.path.insert(0, gguf_py)
        from gguf import GGUFReader  # noqa: E402 (llama.cpp's own reader)

        reader = GGUFReader(model_path)
        field = reader.fields["tokenizer.ggml.tokens"]
        tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        field = reader.fields["tokenizer.ggml.token_type"]
        types = [int(field.parts[i][0]) for i in field.data]
        kind = reader.fields["tokenizer.ggml.model"].contents()
        unbyte = {c: b for b, c in gpt2_byte_chars().items()}
        self.bytes = []
        for text, ty in zip(tokens, types):
            if ty == 3:  # CONTROL
                self.bytes.append(b"")
            elif ty == 6 and text.startswith("<0x"):  # BYTE
                self.bytes.append(bytes([int(text[3:-1], 16)]))
            elif kind == "gpt2" and ty != 4:
                self.bytes.append(bytes(unbyte[c] for c in text))
            else:
                self.bytes.append(text.replace("\u2581", " ").encode())


def gpt2_byte_chars():
    """The GPT-2 byte-level BPE map from bytes to printable characters."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def ends_mid_character(text):
    """llama-server's validate_utf8: does `text` end inside a UTF-8 character?"""
    for i in range(1, min(4, len(text)) + 1):
        c = text[-i]
        if (c & 0xE0) == 0xC0 and i < 2:
            return True
        if (c & 0xF0) == 0xE0 and i < 3:
            return True
        if (c & 0xF8) == 0xF0 and i < 4:
            return True
    return False


def align_top2(vocab, tokens, probs):
    """Put the server's probabilities at their steps.

    The server records no probabilities for a token after which the text ends
    inside a UTF-8 character; those steps get null. A recorded entry's bytes
    are all the text not sent before it, which checks the alignment.
    """
    top2, text, sent, k = [], b"", 0, 0
    for step, tok in enumerate(tokens):
        text += vocab.bytes[tok]
        if ends_mid_character(text):
            top2.append(None)
            continue
        entry = probs[k]
        k += 1
        if entry["id"] != tok or bytes(entry["bytes"]) != text[sent:]:
            sys.exit(f"step {step}: cannot align probabilities (token {tok}, entry {entry['id']})")
        sent = len(text)
        top2.append(top2_of(entry))
    if k != len(probs):
        sys.exit(f"{len(probs) - k} probability entries left over after alignment")
    return top2


def run_case(server, vocab, prompt):
    prompt_ids = post(
        server + "/tokenize",
        {"content": prompt, "add_special": True, "parse_special": True},
    )["tokens"]
    # Token ids as the prompt: the server adds no BOS of its own.
    res = post(server + "/completion", dict(GREEDY, prompt=prompt_ids, n_predict=N_PREDICT))
    tokens = res["tokens"]
    if len(tokens) != N_PREDICT:
        sys.exit(f"expected {N_PREDICT} tokens, got {len(tokens)}")
    top2 = align_top2(vocab, tokens, res["completion_probabilities"])
    for step, (tok, cands) in enumerate(zip(tokens, top2)):
        if cands is not None and cands[0][0] != tok:
            # Expected for end-of-generation tokens, which ignore_eos masks
            # after the probabilities are taken.
            print(f"  note: step {step}: top-1 {cands[0][0]} was skipped for {tok}", file=sys.stderr)
    return {
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "tokens": tokens,
        "text": res["content"],
        "top2": top2,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True, help="path of the GGUF the server runs")
    ap.add_argument("--family", required=True, choices=sorted(TEMPLATES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--server-command", required=True)
    ap.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py folder")
    args = ap.parse_args()

    template = TEMPLATES[args.family]
    vocab = Vocab(args.model, args.gguf_py)
    cases = []
    for text, chat in PROMPTS:
        prompt = template.format(text) if chat else text
        cases.append(run_case(args.server, vocab, prompt))
        print(f"  {len(cases[-1]['prompt_ids']):3d} prompt tokens: {text[:40]!r}", file=sys.stderr)

    fixture = {
        "model": os.path.basename(args.model),
        "sha256": sha256_file(args.model),
        "llama_cpp": "b11434",
        "command": args.command,
        "server_command": args.server_command,
        "notes": "greedy (temperature 0, top_k 1), ignore_eos, 64 tokens; top2 = "
        "[token id, probability] of the two most likely tokens under the full "
        "softmax of the raw logits at each step; prompt_ids from /tokenize with "
        "add_special and parse_special; text is the decoded continuation. top2 "
        "is taken before ignore_eos masks end-of-generation tokens, so one may be "
        "ranked first at a step where the next-best token was generated. "
        "A step's top2 is null where the server records no probabilities: after "
        "a token that leaves the text inside a UTF-8 character",
        "cases": cases,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
