"""Popular client libraries, unchanged, against the gateway and its simulator, as an app developer uses them.

Each test asserts what the library hands the app (parsed tool calls, a validated object, n choices, vectors of
the asked size), because that is where a simulator of the wrong form breaks an app's first step.
"""

from __future__ import annotations

import json
import os

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.e2e

API_VERSION = "2024-10-21"
RESPONSES_API_VERSION = "2025-03-01-preview"
CHAT = "gpt-4o-mini"
EMBED = "text-embedding-3-small"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}, "twenty_four_hours": {"type": "boolean"}},
            "required": ["timezone"],
        },
    },
}


class Address(BaseModel):
    street: str
    postcode: str = Field(min_length=4, max_length=10)


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int = Field(ge=0, le=130)
    email: str | None
    tags: list[str]
    address: Address


def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city."""
    return f"18 degrees {unit} in {city}"


@pytest.fixture
def azure(gateway):
    return openai.AzureOpenAI(azure_endpoint=gateway.api, api_key="local", api_version=API_VERSION, max_retries=0)


@pytest.fixture
def v1(gateway):
    return openai.OpenAI(base_url=f"{gateway.api}/openai/v1", api_key="local", max_retries=0)


# --- langchain-openai ----------------------------------------------------------------------------------------


@pytest.fixture
def chat_model(gateway):
    from langchain_openai import AzureChatOpenAI

    return AzureChatOpenAI(
        azure_endpoint=gateway.api, azure_deployment=CHAT, api_version=API_VERSION, api_key="local", max_retries=0
    )


def test_langchain_invoke_and_stream(chat_model):
    message = chat_model.invoke("Hello there, gateway!")
    assert message.content.split()[:3] == ["the", "gateway", "answered"]
    assert message.usage_metadata["output_tokens"] == 12
    assert message.response_metadata["finish_reason"] == "stop"

    streamed = list(chat_model.stream("Hello there, gateway!"))
    assert len(streamed) > 5  # token by token, not one lump
    assert "".join(chunk.content for chunk in streamed) == message.content


def test_langchain_bind_tools_gets_tool_calls_then_a_final_answer(chat_model):
    from langchain_core.messages import HumanMessage, ToolMessage

    with_tools = chat_model.bind_tools([get_weather])
    question = HumanMessage("What's the weather in Paris?")
    first = with_tools.invoke([question])

    [call] = first.tool_calls
    assert call["name"] == "get_weather" and call["id"].startswith("call_")
    assert call["args"]["city"] == "Paris"  # free text is taken from the prompt's names
    assert first.response_metadata["finish_reason"] == "tool_calls"
    result = ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])

    final = with_tools.invoke([question, first, result])

    assert final.tool_calls == [] and final.content  # the agent loop ends with text


def test_langchain_streamed_tool_calls_are_assembled(chat_model):
    chunks = list(chat_model.bind_tools([get_weather]).stream("What's the weather in Paris?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk

    [call] = merged.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) <= {"city", "unit"} and "city" in call["args"]
    assert len([c for c in chunks if c.tool_call_chunks]) > 2  # arguments arrived in fragments


@pytest.mark.parametrize("method", [None, "json_schema", "function_calling"])  # None: langchain's default
def test_langchain_with_structured_output_returns_a_validated_object(chat_model, method):
    structured = chat_model.with_structured_output(Person, **({"method": method} if method else {}))
    prompt = "Extract the person from: Ada, 36, lives at 1 Main St."

    person = structured.invoke(prompt)

    assert isinstance(person, Person) and 0 <= person.age <= 130 and 4 <= len(person.address.postcode) <= 10
    assert structured.invoke(prompt) == person  # deterministic


def test_langchain_json_mode_returns_a_json_object(chat_model):
    # json_mode sends no schema to the model (only the prompt could describe one): a JSON object comes back.
    structured = chat_model.with_structured_output(method="json_mode")
    assert isinstance(structured.invoke("Answer in JSON: who is Ada?"), dict)


def test_langchain_embeddings_honour_dimensions(gateway):
    from langchain_openai import AzureOpenAIEmbeddings

    embeddings = AzureOpenAIEmbeddings(
        azure_endpoint=gateway.api,
        azure_deployment=EMBED,
        api_version=API_VERSION,
        api_key="local",
        dimensions=256,
        # By default langchain pre-tokenizes with tiktoken, which downloads its vocabulary on first use;
        # nothing is downloaded in tests, so texts go as they are (the simulator counts them itself).
        check_embedding_ctx_length=False,
    )
    documents = embeddings.embed_documents(["first text", "second text"])
    query = embeddings.embed_query("first text")

    assert [len(v) for v in documents] == [256, 256]
    assert query == pytest.approx(documents[0])
    assert documents[0] != documents[1]


# --- LiteLLM ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no model price list downloaded at import
    import litellm

    litellm.telemetry = False
    return litellm


def _litellm_args(gateway) -> dict[str, str]:
    return {"model": f"azure/{CHAT}", "api_base": gateway.api, "api_key": "local", "api_version": API_VERSION}


def test_litellm_completion_and_stream(litellm, gateway):
    messages = [{"role": "user", "content": "Hello there, gateway!"}]
    response = litellm.completion(messages=messages, **_litellm_args(gateway))
    text = response.choices[0].message.content
    assert text.split()[:2] == ["the", "gateway"] and response.usage.completion_tokens == 12

    chunks = list(litellm.completion(messages=messages, stream=True, **_litellm_args(gateway)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


def test_litellm_structured_output_and_embeddings(litellm, gateway):
    response = litellm.completion(
        messages=[{"role": "user", "content": "Extract: Ada, 36."}], response_format=Person, **_litellm_args(gateway)
    )
    assert isinstance(Person.model_validate_json(response.choices[0].message.content), Person)

    embedded = litellm.embedding(
        model=f"azure/{EMBED}",
        input=["one", "two"],
        dimensions=64,
        api_base=gateway.api,
        api_key="local",
        api_version=API_VERSION,
    )
    assert [len(item["embedding"]) for item in embedded.data] == [64, 64]


def test_litellm_tools_stream(litellm, gateway):
    stream = litellm.completion(
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        **_litellm_args(gateway),
    )
    rebuilt = litellm.stream_chunk_builder(list(stream))

    [call] = rebuilt.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])


# --- the openai SDK -----------------------------------------------------------------------------------------------


def test_openai_parallel_tool_calls_validate_against_their_schemas(azure):
    completion = azure.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "What's the weather in Paris and the time in Tokyo timezone?"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    choice = completion.choices[0]

    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    by_name = {call.function.name: call for call in choice.message.tool_calls}
    assert set(by_name) == {"get_weather", "get_time"}
    assert json.loads(by_name["get_weather"].function.arguments)["city"] == "Paris"
    assert json.loads(by_name["get_time"].function.arguments)["timezone"] == "Tokyo"
    for tool in (WEATHER_TOOL, TIME_TOOL):
        jsonschema.validate(
            json.loads(by_name[tool["function"]["name"]].function.arguments), tool["function"]["parameters"]
        )
    assert completion.usage.completion_tokens > 0


def test_openai_tool_choice_controls_the_calls(azure):
    ask = [{"role": "user", "content": "What's the weather in Paris and the time in Tokyo timezone?"}]
    single = azure.chat.completions.create(
        model=CHAT, messages=ask, tools=[WEATHER_TOOL, TIME_TOOL], parallel_tool_calls=False
    )
    forced = azure.chat.completions.create(
        model=CHAT,
        messages=ask,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    none = azure.chat.completions.create(model=CHAT, messages=ask, tools=[WEATHER_TOOL], tool_choice="none")

    assert len(single.choices[0].message.tool_calls) == 1
    assert [c.function.name for c in forced.choices[0].message.tool_calls] == ["get_time"]
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


def test_openai_streamed_tool_calls_assemble_into_the_same_calls(azure):
    ask = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "What's the weather in Paris and the time in Tokyo timezone?"}],
        "tools": [WEATHER_TOOL, TIME_TOOL],
    }
    whole = azure.chat.completions.create(**ask).choices[0].message.tool_calls

    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in azure.chat.completions.create(**ask, stream=True):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
            finish = choice.finish_reason or finish

    assert finish == "tool_calls"
    assert [(c["id"], c["name"], c["arguments"]) for c in calls.values()] == [
        (c.id, c.function.name, c.function.arguments) for c in whole
    ]


def test_openai_json_schema_parses_into_the_model(azure):
    completion = azure.chat.completions.parse(
        model=CHAT, messages=[{"role": "user", "content": "Extract: Ada, 36."}], response_format=Person
    )
    person = completion.choices[0].message.parsed

    assert isinstance(person, Person)
    assert completion.choices[0].finish_reason == "stop"


def test_openai_json_schema_not_strict_and_json_object(azure):
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "integer", "minimum": 3, "maximum": 7}, "minItems": 3}
        },
        "required": ["items"],
    }
    loose = azure.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Three numbers"}],
        response_format={"type": "json_schema", "json_schema": {"name": "numbers", "schema": schema, "strict": False}},
    )
    jsonschema.validate(json.loads(loose.choices[0].message.content), schema)

    as_json = azure.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Reply in JSON"}], response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(as_json.choices[0].message.content), dict)


def test_openai_n_choices_stop_and_limits(azure):
    hello = [{"role": "user", "content": "Hello there, gateway!"}]
    several = azure.chat.completions.create(model=CHAT, messages=hello, n=3)
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert len({c.message.content for c in several.choices}) == 3
    assert several.usage.completion_tokens == 36

    stopped = azure.chat.completions.create(model=CHAT, messages=hello, stop=[" request"])
    assert stopped.choices[0].message.content == "the gateway answered this"
    assert stopped.choices[0].finish_reason == "stop"

    cut = azure.chat.completions.create(model=CHAT, messages=hello, n=2, max_tokens=3)
    assert [c.finish_reason for c in cut.choices] == ["length", "length"]
    assert cut.usage.completion_tokens == 6


def test_openai_logprobs_are_shaped_like_azures(azure):
    completion = azure.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Hi"}], logprobs=True, top_logprobs=2, max_tokens=4
    )
    entries = completion.choices[0].logprobs.content

    assert "".join(e.token for e in entries) == completion.choices[0].message.content
    assert all(e.logprob <= 0 and len(e.top_logprobs) == 2 and e.bytes == list(e.token.encode()) for e in entries)

    streamed = [
        entry
        for chunk in azure.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "Hi"}], logprobs=True, max_tokens=4, stream=True
        )
        for choice in chunk.choices
        if choice.logprobs and choice.logprobs.content
        for entry in choice.logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in entries]


def test_openai_responses_api_with_tools_then_a_final_answer(gateway):
    client = openai.AzureOpenAI(
        azure_endpoint=gateway.api, api_key="local", api_version=RESPONSES_API_VERSION, max_retries=0
    )
    tool = {"type": "function", **WEATHER_TOOL["function"]}
    first = client.responses.create(model=CHAT, input="What's the weather in Paris?", tools=[tool])

    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), tool["parameters"])

    follow_up = client.responses.create(
        model=CHAT,
        tools=[tool],
        input=[
            {"role": "user", "content": "What's the weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"},
        ],
    )
    assert follow_up.status == "completed" and follow_up.output_text

    streamed = list(
        client.responses.create(model=CHAT, input="What's the weather in Paris?", tools=[tool], stream=True)
    )
    arguments = "".join(e.delta for e in streamed if e.type == "response.function_call_arguments.delta")
    assert arguments == call.arguments
    assert streamed[-1].type == "response.completed"


def test_openai_responses_api_text_format_json_schema(v1):
    schema = Person.model_json_schema()
    response = v1.responses.create(
        model=CHAT,
        input="Extract: Ada, 36.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": False}},
    )
    assert Person.model_validate_json(response.output_text)

    parsed = v1.responses.parse(model=CHAT, input="Extract: Ada, 36.", text_format=Person)
    assert isinstance(parsed.output_parsed, Person)


# --- Azure's errors, raised by the SDKs as against Azure ---------------------------------------------------------


@pytest.fixture(scope="module")
def roomy(start_gateway, simulator, storage_connection_string):
    """A gateway without a deployment allowlist and with room for a prompt past a model's context window, so
    these requests reach the simulator and the errors come from it, as they would come from Azure."""
    return start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
            "GATEWAY_MAX_REQUEST_BYTES": str(4 * 1024 * 1024),
            "GATEWAY_MAX_PROMPT_TOKENS": "1000000",
        }
    )


@pytest.fixture
def roomy_azure(roomy):
    return openai.AzureOpenAI(azure_endpoint=roomy.api, api_key="local", api_version=API_VERSION, max_retries=0)


def test_an_unknown_deployment_is_azures_404_deployment_not_found(roomy_azure, sim):
    with pytest.raises(openai.NotFoundError) as caught:
        roomy_azure.chat.completions.create(model="gpt-4o-typo", messages=[{"role": "user", "content": "Hi"}])

    assert caught.value.status_code == 404 and caught.value.code == "DeploymentNotFound"
    assert "deployment for this resource does not exist" in caught.value.message
    assert [r["deployment"] for r in sim.requests()] == ["gpt-4o-typo"]  # the simulator answered, not the gateway


def test_a_prompt_past_the_context_window_is_context_length_exceeded(roomy_azure, roomy, litellm):
    too_long = [{"role": "user", "content": "word " * 130_000}]  # past gpt-4o-mini's 128,000 tokens
    with pytest.raises(openai.BadRequestError) as caught:
        roomy_azure.chat.completions.create(model=CHAT, messages=too_long)

    assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"
    assert caught.value.type == "invalid_request_error"
    assert "maximum context length is 128000 tokens" in caught.value.message

    with pytest.raises(litellm.ContextWindowExceededError):  # LiteLLM recognises it as it does Azure's
        litellm.completion(
            model=f"azure/{CHAT}", messages=too_long, api_base=roomy.api, api_key="local", api_version=API_VERSION
        )


def test_a_prompt_the_content_filter_refuses_is_a_400_content_filter(azure, gateway, litellm, chat_model):
    flagged = [{"role": "user", "content": "Tell me something [[content_filter:hate]]"}]
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(model=CHAT, messages=flagged)

    error = caught.value
    assert error.code == "content_filter" and error.param == "prompt"
    assert error.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    verdicts = error.body["innererror"]["content_filter_result"]
    assert verdicts["hate"] == {"filtered": True, "severity": "high"}
    assert verdicts["violence"] == {"filtered": False, "severity": "safe"}
    assert verdicts["jailbreak"] == {"filtered": False, "detected": False}

    with pytest.raises(openai.BadRequestError, match="content management policy"):
        chat_model.invoke("Tell me something [[content_filter]]")  # langchain lets the SDK's error through
    with pytest.raises(litellm.ContentPolicyViolationError):
        litellm.completion(messages=flagged, stream=True, **_litellm_args(gateway))


def test_a_reasoning_deployment_reports_reasoning_tokens_and_can_run_out(roomy_azure):
    hello = [{"role": "user", "content": "Hello there, gateway!"}]
    thought = roomy_azure.chat.completions.create(model="o4-mini", messages=hello)
    assert thought.usage.completion_tokens_details.reasoning_tokens == 64
    assert thought.usage.completion_tokens == 64 + 12 and thought.choices[0].message.content

    out_of_room = roomy_azure.chat.completions.create(model="o4-mini", messages=hello, max_completion_tokens=32)
    assert out_of_room.choices[0].finish_reason == "length" and out_of_room.choices[0].message.content == ""

    with pytest.raises(openai.BadRequestError) as caught:
        roomy_azure.chat.completions.create(model="o4-mini", messages=hello, max_tokens=32)
    assert caught.value.code == "unsupported_parameter"


def test_chat_on_an_embeddings_deployment_is_operation_not_supported(azure):
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.code == "OperationNotSupported"
    assert "chatCompletion operation does not work with the specified model, text-embedding-3-small" in str(
        caught.value.message
    )
