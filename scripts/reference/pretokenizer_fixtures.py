#!/usr/bin/env python3
"""Token ids from llama.cpp b11434 for BPE pre-tokenizers that have no
vocabulary test file of their own (`tekken`, `gpt-4o`): Llama 3's vocabulary
(models/ggml-vocab-llama-bpe.gguf) with `tokenizer.ggml.pre` set to each, the
texts of its .inp test file plus cases aimed at the cased-word rules,
tokenized by llama-tokenize (no BOS, special tokens as text). Writes
fixtures/tokenizer/pre-<name>.json, read by crates/tokenizer/tests/pretokenizers.rs.

Usage: pretokenizer_fixtures.py LLAMA_BIN_DIR VOCAB_DIR   (with the `gguf`
package of scripts/reference/requirements-tiny.txt)
"""
import json
import os
import subprocess
import sys
import tempfile

import gguf

EXTRA = [
    "HELLOworld helloWorld ÉCOLEs éA",
    "DON'T we'RE they'll I'M it's O'Neil",
    "McDonald's iPhone XMLHttpRequest camelCase snake_case",
    "ǅungla ǄUNGLA ǆungla Ǆungla",
    "e\u0301te\u0301 CAFE\u0301 naïve NAÏVE",
    "Привет МИР мир ΑΒΓ αβγ",
    "日本語 中文 한국어 עברית العربية",
    "12345 1234567 ١٢٣٤ ⅠⅡⅢ ½",
    "a/b/c //\n/ http://x.y/z\r\n\r\n  end",
    "\t\tTabs\t and\u00a0nbsp\u2003em space\u3000ideographic",
    "!!!Wow??? (yes) [NO] {Maybe}",
    "   leading and trailing   ",
    "emoji 🎉🚀 mixed🙂Case",
]


def main():
    bin_dir, vocab_dir = sys.argv[1], sys.argv[2]
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "tokenizer")
    src = os.path.join(vocab_dir, "ggml-vocab-llama-bpe.gguf")
    with open(src + ".inp", encoding="utf-8") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")
    if texts and texts[-1] == "":
        texts.pop()
    texts += EXTRA
    r = gguf.GGUFReader(src)
    fields = r.fields
    for pre in ["tekken", "gpt-4o"]:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "vocab.gguf")
            w = gguf.GGUFWriter(path, "llama")
            w.add_tokenizer_model("gpt2")
            w.add_tokenizer_pre(pre)
            w.add_token_list(fields["tokenizer.ggml.tokens"].contents())
            w.add_token_types(fields["tokenizer.ggml.token_type"].contents())
            w.add_token_merges(fields["tokenizer.ggml.merges"].contents())
            w.add_bos_token_id(int(fields["tokenizer.ggml.bos_token_id"].contents()))
            w.add_eos_token_id(int(fields["tokenizer.ggml.eos_token_id"].contents()))
            w.add_add_bos_token(False)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            cases = []
            for text in texts:
                tf = os.path.join(tmp, "text.txt")
                with open(tf, "w", encoding="utf-8") as f:
                    f.write(text)
                cmd = [os.path.join(bin_dir, "llama-tokenize"), "-m", path, "-f", tf, "--ids",
                       "--log-disable", "--no-escape", "--no-parse-special"]
                out = subprocess.run(cmd, check=True, capture_output=True).stdout.decode().strip()
                cases.append({"text": text, "ids": json.loads(out)})
        with open(os.path.join(out_dir, f"pre-{pre}.json"), "w", encoding="utf-8") as f:
            json.dump({"vocab": "llama-bpe", "pre": pre, "cases": cases}, f, ensure_ascii=False, indent=0)
        print(pre, len(cases))


if __name__ == "__main__":
    main()
