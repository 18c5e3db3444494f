"""Agent frameworks and retrieval against the gateway and its simulator, as an app developer runs them locally.

A framework's agent loop ends only when the model stops calling tools or calls the tool that returns the
structured result; a simulator that calls the same tool on every turn runs the loop to the framework's request
limit, each turn billed through the gateway. These tests count what reached the simulator (``sim.requests()``).
Retrieval needs embeddings in which a paraphrase lies nearest to the text it paraphrases.
"""

from __future__ import annotations

import math

import openai
import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.e2e

API_VERSION = "2024-10-21"
RESPONSES_API_VERSION = "2025-03-01-preview"
CHAT = "gpt-4o-mini"
EMBEDDINGS_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")


class Forecast(BaseModel):
    city: str
    temperature_celsius: float
    summary: str


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"18 degrees and sunny in {city}"


@pytest.fixture(scope="module")
def open_gateway(start_gateway, simulator, storage_connection_string):
    """A gateway without a deployment allowlist, so every embeddings deployment of the simulator is reachable."""
    return start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
        }
    )


def _model_calls(sim) -> list[dict]:
    return [r for r in sim.requests() if r["path"].endswith(("/chat/completions", "/responses"))]


# --- pydantic-ai -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_pydantic_ai_tool_and_structured_output_finish_in_three_calls(gateway, sim, api):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.azure import AzureProvider

    provider = AzureProvider(
        azure_endpoint=gateway.api,
        api_version=API_VERSION if api == "chat" else RESPONSES_API_VERSION,
        api_key="local",
    )
    model = (OpenAIChatModel if api == "chat" else OpenAIResponsesModel)(CHAT, provider=provider)
    agent = Agent(model, output_type=Forecast, tools=[get_weather], retries=0)

    result = agent.run_sync("What is the weather in Paris?")

    assert isinstance(result.output, Forecast)
    calls = _model_calls(sim)
    assert 2 <= len(calls) <= 3  # the app's tool, then final_result: not a loop to the request limit
    tool_names = [
        part.tool_name for message in result.all_messages() for part in message.parts if hasattr(part, "tool_name")
    ]
    assert "get_weather" in tool_names and tool_names[-1] == "final_result"


# --- LangChain create_agent -------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["tool", "provider"])
def test_langchain_create_agent_with_a_response_format_finishes_in_three_calls(gateway, sim, strategy):
    from langchain.agents import create_agent
    from langchain.agents.structured_output import ProviderStrategy, ToolStrategy
    from langchain_openai import AzureChatOpenAI

    model = AzureChatOpenAI(
        azure_endpoint=gateway.api, azure_deployment=CHAT, api_version=API_VERSION, api_key="local", max_retries=0
    )
    response_format = ToolStrategy(Forecast) if strategy == "tool" else ProviderStrategy(Forecast)
    agent = create_agent(model, tools=[get_weather], response_format=response_format)

    state = agent.invoke({"messages": [{"role": "user", "content": "What is the weather in Paris?"}]})

    assert isinstance(state["structured_response"], Forecast)
    assert 2 <= len(_model_calls(sim)) <= 3
    called = [call["name"] for message in state["messages"] for call in getattr(message, "tool_calls", [])]
    assert called[0] == "get_weather"


# --- when a model calls a tool ----------------------------------------------------------------------------------


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_greeting_gets_text_and_a_weather_question_gets_the_weather_tool(gateway):
    client = openai.AzureOpenAI(azure_endpoint=gateway.api, api_key="local", api_version=API_VERSION, max_retries=0)

    hello = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Hello!"}], tools=[WEATHER_TOOL]
    ).choices[0]
    weather = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=[WEATHER_TOOL]
    ).choices[0]

    assert hello.finish_reason == "stop" and hello.message.content and hello.message.tool_calls is None
    [call] = weather.message.tool_calls
    assert weather.finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris"}'


# --- retrieval --------------------------------------------------------------------------------------------------

DOCUMENTS = [
    "To reset a forgotten password, open Settings, choose Security and select Reset password.",
    "Invoices are emailed on the first business day of every month as PDF attachments.",
    "Our office in Lisbon is closed on public holidays and every Sunday.",
    "Refunds for cancelled orders reach your card within five to ten working days.",
    "The mobile app supports dark mode on Android and iOS since version 4.2.",
    "Two-factor authentication can be turned on with an authenticator app or SMS codes.",
    "Shipping to Canada takes about a week and customs fees are paid by the recipient.",
    "Team administrators can invite new members from the Members page of the dashboard.",
    "The API rate limit is 600 requests per minute for each access key.",
    "Export your data as CSV from the Reports section, one file per project.",
    "Our support line answers calls from 8 am to 6 pm, Monday to Friday.",
    "Gift cards never expire and can be combined with discount codes at checkout.",
    "The warehouse in Rotterdam ships orders placed before noon on the same day.",
    "Deleting a project removes its files permanently after a thirty day grace period.",
    "Students get a fifty percent discount on the annual subscription with a valid school email.",
    "Printers on the third floor need a badge to release queued print jobs.",
    "Webhooks retry failed deliveries with exponential backoff for up to three days.",
    "The cafeteria serves vegetarian lunch options every weekday.",
    "Backups of the database run nightly and are kept for thirty five days.",
    "Change the language of the interface under Profile, then Preferences.",
]
QUERIES = {  # paraphrases: other words and word forms than the document they should find
    "How can I change my password if I forgot it?": 0,
    "when do refunds for a cancelled order arrive on my card": 3,
    "how long are database backups retained": 18,
    "Is there a student discount for the yearly subscription?": 14,
    "How do I switch the interface language?": 19,
}


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _nearest(query: list[float], documents: list[list[float]]) -> int:
    return max(range(len(documents)), key=lambda i: _cosine(query, documents[i]))


@pytest.mark.parametrize("deployment", EMBEDDINGS_MODELS)
def test_a_paraphrase_retrieves_its_document_through_the_openai_sdk(open_gateway, deployment):
    client = openai.AzureOpenAI(
        azure_endpoint=open_gateway.api, api_key="local", api_version=API_VERSION, max_retries=0
    )
    documents = [d.embedding for d in client.embeddings.create(model=deployment, input=DOCUMENTS).data]
    queries = [d.embedding for d in client.embeddings.create(model=deployment, input=list(QUERIES)).data]

    assert [_nearest(q, documents) for q in queries] == list(QUERIES.values())


@pytest.mark.parametrize("deployment", EMBEDDINGS_MODELS)
def test_a_paraphrase_retrieves_its_document_through_langchain(open_gateway, deployment):
    from langchain_openai import AzureOpenAIEmbeddings

    embeddings = AzureOpenAIEmbeddings(
        azure_endpoint=open_gateway.api,
        azure_deployment=deployment,
        api_version=API_VERSION,
        api_key="local",
        check_embedding_ctx_length=False,  # no tiktoken download (docs/decisions.md D29)
        **({"dimensions": 256} if deployment != "text-embedding-ada-002" else {}),
    )
    documents = embeddings.embed_documents(DOCUMENTS)

    # As a retriever ranks: the document nearest the query by cosine similarity (langchain's in-memory store does
    # the same with numpy, which the tests do not install).
    assert [_nearest(embeddings.embed_query(q), documents) for q in QUERIES] == list(QUERIES.values())
