"""No prompt or completion text, key, token or principal name reaches any log record, span or metric.

Distinctive values go through streaming and non-streaming calls authenticated with an Entra token and a gateway
API key; then every log record (message, arguments, extra fields), every span (name, attributes, status, events)
and every metric data point's attributes are searched for them. Caller ids (tenant/object id) are expected: they
are the per-caller dimension. The second test does the same over a real gateway process exporting to its console.
"""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from tests.identity_provider import CLIENT_ID, TENANT

PROMPT = "zebra-quartz-7781 is my private prompt"
IMAGE_PROMPT = "ocelot-umber-5523 painting my private garden"
TRANSCRIPT = "marmalade-ostrich-4410 whispered the private plan"
SPOKEN = "heliotrope-vortex-9036 read aloud in private"
PRINCIPAL_NAME = "Quinn Okonkwo-Zebrafish"
PRINCIPAL_UPN = "quinn.zebrafish@contoso.example"
CHAT = "gpt-4o-mini"
V1 = "/api/openai/v1"


@pytest.fixture
def issuer(_identity_provider):
    return _identity_provider.reset()


@pytest.fixture
def extra_env(issuer) -> dict[str, str]:
    return {
        "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini,dall-e-3,gpt-image-1,whisper,gpt-4o-transcribe,tts",
        "GATEWAY_AUTH_TENANT_IDS": TENANT,
        "GATEWAY_AUTH_CLIENT_ID": CLIENT_ID,
        "GATEWAY_AUTH_AUTHORITY": issuer.authority,
    }


def _token(issuer, roles=("Gateway.Use",)) -> str:
    return issuer.token(name=PRINCIPAL_NAME, preferred_username=PRINCIPAL_UPN, roles=list(roles))


def _log_texts(records) -> list[str]:
    texts = []
    for record in records:
        texts.append(record.getMessage())
        texts += [repr(value) for value in vars(record).values()]
    return texts


def _span_texts(spans) -> list[str]:
    texts = []
    for span in spans:
        texts.append(span.name)
        texts += [f"{k}={v!r}" for k, v in (span.attributes or {}).items()]
        texts.append(repr(span.status.description))
        for event in span.events:
            texts.append(event.name)
            texts += [f"{k}={v!r}" for k, v in (event.attributes or {}).items()]
    return texts


def _completion_fragments(text: str) -> list[str]:
    """The completion, and every run of three words of it (single words are common English)."""
    words = text.split()
    return [text.strip()] + [" ".join(words[i : i + 3]) for i in range(len(words) - 2)]


def _leaks(texts: list[str], secrets: list[str]) -> list[tuple[str, str]]:
    return [(secret, text[:160]) for text in texts for secret in secrets if secret and secret in text]


async def test_nothing_private_reaches_logs_spans_or_metrics(in_process, issuer):
    gateway, observed = in_process
    client = gateway.client
    token = _token(issuer)
    admin = _token(issuer, roles=("Gateway.Admin", "Gateway.Use"))
    issued = await client.post("/api/manage/keys", headers={"authorization": f"Bearer {admin}"}, json={"name": "p"})
    key = issued.json()["key"]
    body = {"model": CHAT, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12}
    completions = []
    for headers in ({"authorization": f"Bearer {token}"}, {"api-key": key}):
        answer = await client.post(f"{V1}/chat/completions", headers=headers, json=body)
        assert answer.status_code == 200, answer.text
        completions.append(answer.json()["choices"][0]["message"]["content"])
        streamed = await client.post(f"{V1}/chat/completions", headers=headers, json={**body, "stream": True})
        assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
        responses = await client.post(f"{V1}/responses", headers=headers, json={"model": CHAT, "input": PROMPT})
        assert responses.status_code == 200, responses.text
    # Refused ones too: a wrong key, a tampered token, a bad body quoting the prompt.
    await client.post(f"{V1}/chat/completions", headers={"api-key": key[:-2] + "xx"}, json=body)
    await client.post(f"{V1}/chat/completions", headers={"authorization": f"Bearer {token[:-4]}AAAA"}, json=body)
    await client.post(f"{V1}/chat/completions", headers={"api-key": key}, json={**body, "max_tokens": PROMPT})
    await gateway.settled()

    secrets = [PROMPT, "zebra-quartz", PRINCIPAL_NAME, PRINCIPAL_UPN, token, token.split(".")[1], admin, key]
    secrets += [key.split("_")[-1]] + [f for c in completions for f in _completion_fragments(c)]
    spans = observed.finished()
    metric_attributes = observed.all_metric_attributes()
    # Telemetry was on and saw the calls, so the absence below means something.
    assert len(observed.finished("chat gpt-4o-mini")) == 6 and metric_attributes and observed.logs.records
    assert _leaks(_span_texts(spans), secrets) == []
    assert _leaks([repr(a) for a in metric_attributes], secrets) == []
    assert _leaks(_log_texts(observed.logs.records), secrets) == []


async def test_no_image_prompt_transcript_or_audio_reaches_logs_spans_or_metrics(in_process, issuer):
    """Image prompts, the words of a transcript (planted in the uploaded WAV, which the simulator "hears"), speech
    input and audio bytes: none of them in any log record, span or metric, refused calls included."""
    from shared.local.simulator.media import wav

    gateway, observed = in_process
    client = gateway.client
    token = _token(issuer)
    admin = _token(issuer, roles=("Gateway.Admin", "Gateway.Use"))
    caller_id = (await client.get("/api/me", headers={"authorization": f"Bearer {token}"})).json()["id"]
    tenant, principal = caller_id.split("/", 1)
    enabled = await client.put(
        f"/api/manage/policies/{tenant}/{principal}", headers={"authorization": f"Bearer {admin}"}, json={"media": True}
    )
    assert enabled.status_code == 200, enabled.text
    headers = {"authorization": f"Bearer {token}"}
    audio = wav(1.5, words=TRANSCRIPT)
    images = await client.post(
        f"{V1}/images/generations",
        headers=headers,
        json={"model": "dall-e-3", "prompt": IMAGE_PROMPT, "response_format": "b64_json"},
    )
    assert images.status_code == 200, images.text
    edited = await client.post(
        f"{V1}/images/edits",
        headers=headers,
        data={"model": "gpt-image-1", "prompt": IMAGE_PROMPT},
        files={"image": ("garden.png", base64.b64decode(images.json()["data"][0]["b64_json"]), "image/png")},
    )
    assert edited.status_code == 200, edited.text
    transcripts = []
    for model, extra in (("whisper", {}), ("gpt-4o-transcribe", {}), ("gpt-4o-transcribe", {"stream": "true"})):
        heard = await client.post(
            f"{V1}/audio/transcriptions",
            headers=headers,
            data={"model": model, "prompt": IMAGE_PROMPT, **extra},
            files={"file": ("plan.wav", audio, "audio/wav")},
        )
        assert heard.status_code == 200, heard.text
        transcripts.append(heard.text)
    assert TRANSCRIPT in transcripts[0]  # the planted words came back: their absence below means something
    speech = await client.post(
        f"{V1}/audio/speech", headers=headers, json={"model": "tts", "voice": "alloy", "input": SPOKEN}
    )
    assert speech.status_code == 200 and len(speech.content) > 1000
    # Refused ones too: a prompt too long quoting the secret, an upload that is not audio.
    await client.post(
        f"{V1}/images/generations", headers=headers, json={"model": "dall-e-3", "prompt": IMAGE_PROMPT * 200}
    )
    await client.post(
        f"{V1}/audio/transcriptions",
        headers=headers,
        data={"model": "whisper"},
        files={"file": ("plan.wav", TRANSCRIPT.encode() * 10, "audio/wav")},
    )
    await gateway.settled()

    secrets = [IMAGE_PROMPT, "ocelot-umber", TRANSCRIPT, "marmalade-ostrich", SPOKEN, "heliotrope-vortex"]
    secrets += [base64.b64encode(audio[44:80]).decode(), speech.content[100:140].hex()]
    spans = observed.finished()
    metric_attributes = observed.all_metric_attributes()
    assert len(observed.finished("audio.transcriptions whisper")) == 1 and metric_attributes
    assert any((span.attributes or {}).get("gateway.unit") == "audio_seconds" for span in spans)
    assert _leaks(_span_texts(spans), secrets) == []
    assert _leaks([repr(a) for a in metric_attributes], secrets) == []
    assert _leaks(_log_texts(observed.logs.records), secrets) == []


def test_a_gateway_process_exporting_to_its_console_prints_nothing_private(start_gateway, gateway_env, issuer, sim):
    process = start_gateway(
        {
            **gateway_env,
            "GATEWAY_LOCAL_DEV_AUTH": "false",
            "GATEWAY_AUTH_TENANT_IDS": TENANT,
            "GATEWAY_AUTH_CLIENT_ID": CLIENT_ID,
            "GATEWAY_AUTH_AUTHORITY": issuer.authority,
            "GATEWAY_TELEMETRY": "console",
            "GATEWAY_LOG_LEVEL": "DEBUG",
        }
    )
    token = _token(issuer)
    client = openai.OpenAI(base_url=f"{process.api}/openai/v1", api_key=token, max_retries=0)
    messages = [{"role": "user", "content": PROMPT}]
    answer = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=12)
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model=CHAT, messages=messages, stream=True)
        if chunk.choices
    )
    httpx.post(f"{process.api}/openai/v1/chat/completions", headers={"authorization": "Bearer " + token[:-4] + "AAAA"})
    process.stop()  # flushes the last metrics to the console

    output = process.output()
    assert '"name": "chat gpt-4o-mini"' in output and "gateway.tokens" in output  # spans and metrics were printed
    secrets = [PROMPT, "zebra-quartz", PRINCIPAL_NAME, PRINCIPAL_UPN, token, token.split(".")[1]]
    secrets += _completion_fragments(answer.choices[0].message.content) + _completion_fragments(streamed)
    assert _leaks(output.splitlines(), secrets) == []
