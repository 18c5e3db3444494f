from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from pydantic import BaseModel, Field

from shared.local.simulator.app import SimulatorRefused, create_app
from shared.local.simulator.deployments import DEFAULT_DEPLOYMENTS, DeploymentsError, deployments_from_env
from shared.local.simulator.schema_values import value_for

AUTH = {"authorization": "Bearer local-simulator-token"}
CHAT_PATH = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]


@pytest.mark.parametrize(
    "env",
    [
        {"WEBSITE_INSTANCE_ID": "abc123"},
        {"WEBSITE_SITE_NAME": "my-gateway", "WEBSITE_OWNER_NAME": "sub+rg"},
    ],
)
def test_the_simulator_refuses_to_run_in_azure(env):
    with pytest.raises(SimulatorRefused, match="refuses to run in Azure"):
        create_app(env)


def test_the_simulator_runs_locally():
    assert create_app({}) is not None


@pytest.fixture
async def client():
    """The simulator in-process, with the default deployments plus a small-context one for limit tests."""
    app = create_app({}, deployments={**DEFAULT_DEPLOYMENTS, "small": "gpt-4"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim", headers=AUTH) as c:
        yield c


async def chat(client: httpx.AsyncClient, deployment: str = "gpt-4o-mini", **body) -> httpx.Response:
    return await client.post(CHAT_PATH.format(deployment), json={"messages": HELLO, **body})


# --- deployments ---------------------------------------------------------------------------------------------


async def test_only_configured_deployments_are_served():
    app = create_app({}, deployments={"chat": "gpt-4.1"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim", headers=AUTH) as c:
        served = await chat(c, "chat")
        missing = await chat(c, "gpt-4o-mini")

    assert served.status_code == 200 and served.json()["model"] == "gpt-4.1-2025-04-14"  # the model, not "chat"
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist. If you created the deployment within "
            "the last 5 minutes, please wait a moment and try again.",
        }
    }


def test_deployments_come_from_the_environment_with_clear_errors():
    assert set(deployments_from_env({})) >= {"gpt-4o-mini", "gpt-4.1", "text-embedding-3-small", "o4-mini"}
    custom = deployments_from_env({"SIMULATOR_DEPLOYMENTS": '{"prod-chat": "gpt-4o", "emb": "text-embedding-3-large"}'})
    assert custom["prod-chat"].model.context_window == 128_000 and custom["prod-chat"].model.encoding == "o200k_base"
    assert custom["emb"].model.dimensions == 3072 and custom["emb"].model.encoding == "cl100k_base"
    with pytest.raises(DeploymentsError, match="unknown model family 'gpt-9'"):
        deployments_from_env({"SIMULATOR_DEPLOYMENTS": '{"x": "gpt-9"}'})
    with pytest.raises(DeploymentsError, match="not valid JSON"):
        deployments_from_env({"SIMULATOR_DEPLOYMENTS": "{x"})
    with pytest.raises(DeploymentsError, match="non-empty JSON object"):
        deployments_from_env({"SIMULATOR_DEPLOYMENTS": "[]"})


async def test_embeddings_and_chat_deployments_do_not_mix(client):
    response = await chat(client, "text-embedding-3-small")
    assert response.status_code == 400 and response.json()["error"]["code"] == "OperationNotSupported"

    response = await client.post(
        "/openai/deployments/gpt-4o/embeddings?api-version=2024-10-21", json={"input": "hello"}
    )
    assert response.status_code == 400 and "embeddings operation does not work" in response.json()["error"]["message"]


# --- bodies it cannot take: Azure-shaped 400s, never a 500 -----------------------------------------------------


def _nested(depth: int) -> object:
    value: object = "deep"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": _nested(500)}]},  # crashed the token counter into a 500
        {"messages": "hello"},
        {"messages": []},
        {"messages": ["hello"]},
        {"messages": [{"role": "robot", "content": "hi"}]},
        {"messages": [{"role": "user", "content": 42}]},
        {"messages": HELLO, "n": "2"},
        {"messages": HELLO, "n": 0},
        {"messages": HELLO, "n": True},
        {"messages": HELLO, "max_tokens": -1},
        {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]},
        {"messages": HELLO, "stop": 3},
        {"messages": HELLO, "tools": {"name": "x"}},
        {"messages": HELLO, "tools": [{"type": "function", "function": {"description": "no name"}}]},
        {"messages": HELLO, "tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
        {"messages": HELLO, "tool_choice": "sometimes"},
        {"messages": HELLO, "tool_choice": "required"},
        {
            "messages": HELLO,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
        },
        {"messages": HELLO, "response_format": "json"},
        {"messages": HELLO, "response_format": {"type": "yaml"}},
        {"messages": HELLO, "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        {"messages": HELLO, "response_format": {"type": "json_object"}},  # never says "json"
        {"messages": HELLO, "top_logprobs": 2},
        {"messages": HELLO, "top_logprobs": 50, "logprobs": True},
        {"messages": HELLO, "logprobs": "yes"},
        {"messages": HELLO, "stream": "yes"},
        {"messages": HELLO, "parallel_tool_calls": "no"},
    ],
)
async def test_a_body_the_simulator_cannot_take_is_an_azure_shaped_400(client, body):
    response = await client.post(CHAT_PATH.format("gpt-4o-mini"), json=body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert "code" in error
    assert (await client.get("/_simulator/requests")).status_code == 200  # the request log still serialises


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"])
async def test_bodies_that_are_not_a_json_object_are_400(client, raw):
    response = await client.post(CHAT_PATH.format("gpt-4o-mini"), content=raw)
    assert response.status_code == 400 and response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/openai/v1/responses", {"model": "gpt-4o-mini", "input": 5}),
        ("/openai/v1/responses", {"model": "gpt-4o-mini", "input": [3]}),
        ("/openai/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "text": {"format": {"type": "json_schema"}}}),
        ("/openai/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "instructions": ["x"]}),
        ("/openai/v1/responses", {"model": 7, "input": "hi"}),
        ("/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": []}),
        ("/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": [{"a": 1}]}),
        ("/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "x", "dimensions": 5000}),
        ("/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "x", "dimensions": "8"}),
        ("/openai/v1/embeddings", {"model": "text-embedding-ada-002", "input": "x", "dimensions": 256}),
        ("/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}),
        ("/openai/deployments/gpt-4o-mini/completions?api-version=2024-10-21", {"prompt": {"a": 1}}),
    ],
)
async def test_other_operations_refuse_bad_bodies_with_400(client, path, body):
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


# --- limits and errors as Azure answers them -------------------------------------------------------------------------


async def test_a_prompt_past_the_context_window(client):
    words = [{"role": "user", "content": "word " * 9000}]
    response = await chat(client, "small", messages=words)
    error = response.json()["error"]
    assert response.status_code == 400
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert error["message"].startswith("This model's maximum context length is 8192 tokens. However, your messages")

    fits = [{"role": "user", "content": "word " * 8000}]
    prompt = (await chat(client, "small", messages=fits)).json()["usage"]["prompt_tokens"]
    response = await chat(client, "small", messages=fits, max_tokens=500)  # prompt + completion past the window
    assert response.status_code == 400
    assert (
        f"you requested {prompt + 500} tokens ({prompt} in the messages, 500 in the completion)"
        in (response.json()["error"]["message"])
    )


@pytest.mark.parametrize("category", ["hate", "self_harm", "sexual", "violence", "jailbreak"])
async def test_the_content_filter_marker_refuses_the_prompt(client, category):
    flagged = [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": f"x [[content_filter:{category}]]"},
    ]
    response = await chat(client, messages=flagged)

    error = response.json()["error"]
    assert response.status_code == 400
    assert (error["code"], error["param"], error["status"], error["type"]) == ("content_filter", "prompt", 400, None)
    result = error["innererror"]["content_filter_result"]
    assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert [name for name, verdict in result.items() if verdict["filtered"]] == [category]


async def test_reasoning_models_refuse_max_tokens(client):
    response = await chat(client, "o4-mini", max_tokens=10)
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_parameter"
    assert (await chat(client, "o4-mini", max_completion_tokens=10)).status_code == 200


async def test_scripted_faults_still_apply(client):
    await client.post("/_simulator/behaviours", json={"fault": "429", "times": 1, "retry_after_ms": 300})
    limited = await chat(client)
    assert limited.status_code == 429 and limited.headers["retry-after-ms"] == "300"
    assert (await chat(client)).status_code == 200


# --- answers of the right form ---------------------------------------------------------------------------------------


class Item(BaseModel):
    sku: str = Field(pattern=r"^\w+$", min_length=1)
    quantity: int = Field(ge=1, le=5)
    price: float = Field(gt=0, lt=10)


class Order(BaseModel):
    id: int
    status: str = Field(json_schema_extra={"enum": ["open", "shipped"]})
    items: list[Item] = Field(min_length=2, max_length=4)
    note: str | None = None
    parent: Order | None = None  # recursive


SCHEMAS = [
    Order.model_json_schema(),
    {"type": "object", "properties": {"a": {"type": ["string", "null"]}, "b": {"const": 3}}, "required": ["a", "b"]},
    {"type": "array", "items": {"type": "number", "multipleOf": 0.5, "minimum": 1, "maximum": 2}, "minItems": 3},
    {
        "type": "object",
        "properties": {"when": {"type": "string", "format": "date-time"}, "who": {"type": "string", "format": "email"}},
    },
    {
        "allOf": [
            {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
            {"properties": {"y": {"type": "boolean"}}},
        ]
    },
    {
        "type": "object",
        "properties": {"code": {"type": "string", "minLength": 30, "maxLength": 31}},
        "required": ["code"],
    },
    {"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2}}},
    {"type": "object", "properties": {"choice": {"oneOf": [{"type": "null"}, {"type": "string", "enum": ["x"]}]}}},
    {},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_values_validate_against_their_schema(schema):
    for seed in ("a", "b", "c"):
        value = value_for(schema, seed)
        jsonschema.validate(value, schema)
        assert value_for(schema, seed) == value  # deterministic


def test_a_schema_that_requires_itself_forever_does_not_crash():
    endless = {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}, "required": ["next"]}}}
    assert isinstance(value_for({"$ref": "#/$defs/n", **endless}, "s"), dict)


def test_pydantic_models_parse_generated_values():
    for seed in ("1", "2", "3"):
        Order.model_validate(value_for(Order.model_json_schema(), seed))


async def test_the_same_request_gets_the_same_answer(client):
    body = {
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": Order.model_json_schema()}}],
        "tool_choice": "required",
    }
    first, second = (await chat(client, **body)).json(), (await chat(client, **body)).json()
    assert first["choices"] == second["choices"]
    different = (await chat(client, messages=[{"role": "user", "content": "Other"}], **body)).json()
    assert different["choices"][0]["message"]["tool_calls"] != first["choices"][0]["message"]["tool_calls"]


async def test_a_follow_up_with_tool_results_gets_text_unless_a_tool_is_required(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    turn = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]

    final = (await chat(client, messages=turn, tools=tools)).json()["choices"][0]
    again = (await chat(client, messages=turn, tools=tools, tool_choice="required")).json()["choices"][0]

    assert final["finish_reason"] == "stop" and final["message"]["content"] and "tool_calls" not in final["message"]
    assert again["finish_reason"] == "tool_calls" and again["message"]["tool_calls"][0]["function"]["name"] == "lookup"


async def test_max_tokens_cuts_tool_arguments_and_json_with_finish_length(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": Order.model_json_schema()}}]
    cut_call = (await chat(client, tools=tools, tool_choice="required", max_tokens=5)).json()
    choice = cut_call["choices"][0]
    assert choice["finish_reason"] == "length" and cut_call["usage"]["completion_tokens"] <= 5 + 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"])

    schema = {"type": "json_schema", "json_schema": {"name": "order", "schema": Order.model_json_schema()}}
    cut_json = (await chat(client, response_format=schema, max_completion_tokens=4)).json()
    assert cut_json["choices"][0]["finish_reason"] == "length" and cut_json["usage"]["completion_tokens"] == 4


async def test_streamed_chunks_carry_the_same_answer_with_usage(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": Order.model_json_schema()}}]
    whole = (await chat(client, tools=tools, tool_choice="required", n=2)).json()
    async with client.stream(
        "POST",
        CHAT_PATH.format("gpt-4o-mini"),
        json={
            "messages": HELLO,
            "tools": tools,
            "tool_choice": "required",
            "n": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        events = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]

    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    arguments: dict[tuple[int, int], str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or []:
                key = (choice["index"], delta["index"])
                arguments[key] = arguments.get(key, "") + delta["function"].get("arguments", "")
    assert arguments == {
        (c["index"], i): call["function"]["arguments"]
        for c in whole["choices"]
        for i, call in enumerate(c["message"]["tool_calls"])
    }
    assert chunks[-1]["usage"] == whole["usage"]


async def test_embeddings_honour_dimensions_and_count_tokens(client):
    response = await client.post(
        "/openai/v1/embeddings",
        json={"model": "text-embedding-3-large", "input": ["one two", "three"], "dimensions": 8},
    )
    body = response.json()
    assert [len(d["embedding"]) for d in body["data"]] == [8, 8]
    assert body["usage"]["prompt_tokens"] == 3
    native = await client.post("/openai/v1/embeddings", json={"model": "text-embedding-3-large", "input": "x"})
    assert len(native.json()["data"][0]["embedding"]) == 3072


async def test_embedding_inputs_past_the_models_limit_are_refused(client):
    response = await client.post(
        "/openai/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["short", "word " * 8200]}
    )
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert "maximum context length is 8191 tokens" in error["message"]


async def test_responses_api_calls_tools_follows_up_and_honours_text_format(client):
    tool = {
        "type": "function",
        "name": "lookup",
        "description": "Look up an order by its number",
        "parameters": Order.model_json_schema(),
    }
    first = (
        await client.post("/openai/v1/responses", json={"model": "gpt-4.1", "input": "Find order", "tools": [tool]})
    ).json()
    [call] = first["output"]
    assert call["type"] == "function_call" and call["name"] == "lookup" and first["status"] == "completed"
    Order.model_validate_json(call["arguments"])

    follow = {
        "model": "gpt-4.1",
        "tools": [tool],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "{}"}],
        "previous_response_id": first["id"],
        "text": {"format": {"type": "json_schema", "name": "order", "schema": Order.model_json_schema()}},
    }
    final = (await client.post("/openai/v1/responses", json=follow)).json()
    [message] = final["output"]
    Order.model_validate_json(message["content"][0]["text"])
    assert final["text"]["format"]["name"] == "order"

    no_json_word = {"model": "gpt-4.1", "input": "hello", "text": {"format": {"type": "json_object"}}}
    assert (await client.post("/openai/v1/responses", json=no_json_word)).status_code == 400
    flagged = {
        "model": "gpt-4.1",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "[[content_filter]]"}]}],
    }
    refused = await client.post("/openai/v1/responses", json=flagged)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_filter"


async def test_legacy_completions_honour_n_stop_and_limits(client):
    response = await client.post(
        "/openai/deployments/gpt-4o-mini/completions?api-version=2024-10-21",
        json={"prompt": "Say", "n": 2, "max_tokens": 3, "stop": "zzz"},
    )
    body = response.json()
    assert [(c["index"], c["finish_reason"]) for c in body["choices"]] == [(0, "length"), (1, "length")]
    assert body["usage"]["completion_tokens"] == 6


async def test_logprobs_on_legacy_completions_and_responses(client):
    legacy = (
        await client.post(
            "/openai/deployments/gpt-4o-mini/completions?api-version=2024-10-21",
            json={"prompt": "Say", "max_tokens": 3, "logprobs": 2},
        )
    ).json()["choices"][0]
    assert "".join(legacy["logprobs"]["tokens"]) == legacy["text"]
    assert legacy["logprobs"]["text_offset"][0] == 0 and all(len(t) == 2 for t in legacy["logprobs"]["top_logprobs"])

    body = {"model": "gpt-4.1", "input": "Hi", "include": ["message.output_text.logprobs"], "top_logprobs": 3}
    part = (await client.post("/openai/v1/responses", json=body)).json()["output"][0]["content"][0]
    assert "".join(e["token"] for e in part["logprobs"]) == part["text"]
    assert all(len(e["top_logprobs"]) == 3 for e in part["logprobs"])


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "minItems": 200, "items": {"type": "array", "minItems": 200, "items": {"type": "integer"}}},
        {"type": "string", "minLength": 10_000_000},
    ],
)
async def test_a_schema_whose_smallest_instance_is_huge_is_a_400_not_a_hang(client, schema):
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": schema}}}}
    ]
    response = await chat(client, tools=tools, tool_choice="required")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_value"


async def test_reasoning_models_spend_reasoning_tokens_within_the_limit(client):
    default = (await chat(client, "o4-mini")).json()
    assert default["usage"]["completion_tokens"] == 12 + 64
    assert default["usage"]["completion_tokens_details"]["reasoning_tokens"] == 64

    exhausted = (await chat(client, "o4-mini", max_completion_tokens=50)).json()
    choice = exhausted["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("", "length")  # the o-series empty answer
    assert exhausted["usage"]["completion_tokens"] == 50

    low = (await chat(client, "gpt-5-mini", max_completion_tokens=20, reasoning_effort="low")).json()
    assert low["choices"][0]["finish_reason"] == "length"
    assert (
        low["usage"]["completion_tokens"] == 20 and low["usage"]["completion_tokens_details"]["reasoning_tokens"] == 16
    )

    assert (await chat(client, "o4-mini", reasoning_effort="extreme")).status_code == 400
    plain = (await chat(client, "gpt-4o-mini", reasoning_effort="high")).json()
    assert plain["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0

    response = await client.post(
        "/openai/v1/responses", json={"model": "o4-mini", "input": "Hi", "reasoning": {"effort": "high"}}
    )
    assert response.json()["usage"]["output_tokens_details"]["reasoning_tokens"] == 256


# --- tool choice like a model (D71) --------------------------------------------------------------------------------


def _tool(name: str, description: str = "") -> dict:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


WEATHER = _tool("get_weather", "Get the current weather in a city")
TIME = _tool("get_time", "Get the local time in a timezone")
FINAL = _tool("final_result", "The final response which ends this conversation")


def _called(*names: str) -> list[dict]:
    calls = [{"id": f"call_{n}", "type": "function", "function": {"name": n, "arguments": "{}"}} for n in names]
    return [
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": f"call_{n}", "content": "done"} for n in names),
    ]


async def _names(client, messages, tools, **body) -> list[str] | None:
    message = (await chat(client, messages=messages, tools=tools, **body)).json()["choices"][0]["message"]
    return [c["function"]["name"] for c in message["tool_calls"]] if "tool_calls" in message else None


async def test_auto_calls_a_tool_only_when_the_user_turn_asks_for_it(client):
    paris = [{"role": "user", "content": "What is the weather in Paris?"}]
    assert await _names(client, HELLO, [WEATHER]) is None  # a greeting runs no tool
    assert await _names(client, [{"role": "user", "content": "Hello!"}], [WEATHER, TIME]) is None
    assert await _names(client, paris, [WEATHER, TIME]) == ["get_weather"]

    both = [{"role": "user", "content": "What's the weather in Paris and the time in Tokyo?"}]
    assert await _names(client, both, [WEATHER, TIME], parallel_tool_calls=False) == ["get_weather"]
    # one at a time: the next turn calls what the user asked for and was not called yet, then answers
    assert await _names(client, both + _called("get_weather"), [WEATHER, TIME], parallel_tool_calls=False) == [
        "get_time"
    ]
    assert await _names(client, both + _called("get_weather", "get_time"), [WEATHER, TIME]) is None
    # a new user turn may call the same tool again
    again = [*paris, *_called("get_weather"), {"role": "assistant", "content": "Sunny."}, *paris]
    assert await _names(client, again, [WEATHER]) == ["get_weather"]


async def test_required_calls_a_tool_not_yet_called_so_a_final_result_tool_ends_the_loop(client):
    paris = [{"role": "user", "content": "What is the weather in Paris?"}]
    tools = [WEATHER, FINAL]
    assert await _names(client, paris, tools, tool_choice="required") == ["get_weather"]
    assert await _names(client, paris + _called("get_weather"), tools, tool_choice="required") == ["final_result"]
    # every tool called since the user turn: required still calls one (the best match)
    assert await _names(client, paris + _called("get_weather", "final_result"), tools, tool_choice="required") == [
        "get_weather"
    ]
    assert await _names(client, HELLO, tools, tool_choice="required") == ["get_weather"]  # no match: the first


async def test_responses_follow_the_same_tool_rules(client):
    def tool(spec: dict) -> dict:
        return {"type": "function", **spec["function"]}

    async def names(items: list[dict], **body) -> list[str]:
        response = await client.post(
            "/openai/v1/responses",
            json={"model": "gpt-4o-mini", "input": items, "tools": [tool(WEATHER), tool(FINAL)], **body},
        )
        return [item.get("name", item["type"]) for item in response.json()["output"]]

    paris = {"role": "user", "content": "What is the weather in Paris?"}
    called = [
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    assert await names([{"role": "user", "content": "Hello!"}]) == ["message"]
    assert await names([paris]) == ["get_weather"]
    assert await names([paris, *called]) == ["message"]
    assert await names([paris, *called], tool_choice="required") == ["final_result"]


# --- what replies call the model (D71) ------------------------------------------------------------------------------


async def test_replies_name_the_model_as_azure_does_not_the_deployment(client):
    app = create_app({}, deployments={"prod-chat": "gpt-4o-mini", "emb": "text-embedding-3-large", "r": "o4-mini"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim", headers=AUTH) as c:
        plain = (await chat(c, "prod-chat")).json()["model"]
        async with c.stream(
            "POST", CHAT_PATH.format("prod-chat"), json={"messages": HELLO, "stream": True}
        ) as response:
            streamed = {
                json.loads(line[6:])["model"] async for line in response.aiter_lines() if line.startswith("data: {")
            }
        responses = (await c.post("/openai/v1/responses", json={"model": "r", "input": "Hi"})).json()["model"]
        embedded = (await c.post("/openai/v1/embeddings", json={"model": "emb", "input": "Hi"})).json()["model"]
        legacy = (
            await c.post(
                CHAT_PATH.format("prod-chat").replace("chat/completions", "completions"), json={"prompt": "Hi"}
            )
        ).json()["model"]

    assert plain == legacy == "gpt-4o-mini-2024-07-18"
    assert streamed == {"", "gpt-4o-mini-2024-07-18"}  # Azure's first (prompt filter) chunk has an empty model
    assert responses == "o4-mini-2025-04-16"
    assert embedded == "text-embedding-3-large"


# --- embeddings that carry meaning (D71) ----------------------------------------------------------------------------


async def _vectors(client, model: str, texts: list[str], **body) -> list[list[float]]:
    response = await client.post("/openai/v1/embeddings", json={"model": model, "input": texts, **body})
    return [d["embedding"] for d in response.json()["data"]]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # the vectors are unit length


@pytest.mark.parametrize("model", ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"])
async def test_similar_texts_get_close_unit_vectors(client, model):
    texts = [
        "How do I reset my forgotten password?",
        "Resetting a password you forgot",
        "Invoices are sent on the first day of the month",
    ]
    query, paraphrase, other = await _vectors(client, model, texts)

    assert all(abs(sum(v * v for v in vector) - 1) < 1e-9 for vector in (query, paraphrase, other))
    assert _cos(query, paraphrase) > 0.5 > 0.1 > _cos(query, other)
    assert await _vectors(client, model, texts[:1]) == [query]  # deterministic


async def test_embeddings_differ_by_model_and_honour_dimensions(client):
    [small] = await _vectors(client, "text-embedding-3-small", ["reset my password"])
    [ada] = await _vectors(client, "text-embedding-ada-002", ["reset my password"])
    assert len(small) == len(ada) == 1536 and small != ada

    short = await _vectors(
        client, "text-embedding-3-small", ["reset my password", "resetting passwords"], dimensions=64
    )
    assert [len(v) for v in short] == [64, 64] and _cos(*short) > 0.5


async def test_an_input_without_words_still_gets_a_unit_vector(client):
    # a lone surrogate is valid JSON (Python's parser takes it); it used to fail while hashing (a 400)
    body = b'{"model": "text-embedding-3-small", "input": ["a \\ud800", "!!!"], "dimensions": 16}'
    response = await client.post("/openai/v1/embeddings", content=body)
    vectors = [d["embedding"] for d in response.json()["data"]]
    assert response.status_code == 200 and all(abs(sum(v * v for v in vector) - 1) < 1e-9 for vector in vectors)
