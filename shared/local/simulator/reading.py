"""Reading a request the way Azure OpenAI does: type checks, limits, the content filter, the context window.

Every body the simulator cannot take becomes an Azure-shaped 400 here (never a 500): wrong types, content
nested deeper than any real request, a ``json_object`` request that never says "json", a named tool that
is not offered. What passes becomes an :class:`Ask` (the shape of the answer) and a prompt token count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from shared.local.simulator import azure_errors
from shared.local.simulator.azure_errors import AzureError
from shared.local.simulator.deployments import Deployment
from shared.local.simulator.replies import Ask, Tool, seed_of
from shared.local.simulator.text import chat_prompt_tokens, count_value_tokens

MAX_NESTING = 100  # far deeper than any real request (a tool schema nests a few dozen levels at most)
MAX_CHOICES = 128
MAX_STOP_SEQUENCES = 4
MAX_TOP_LOGPROBS = 20
MAX_LEGACY_LOGPROBS = 5
# Reasoning tokens a reasoning model spends before answering, by effort (deterministic stand-ins: real models
# vary); "medium" is the default.
REASONING_TOKENS = {"minimal": 0, "low": 16, "medium": 64, "high": 256}
CONTENT_FILTER_MARKER = re.compile(r"\[\[content_filter(?::(hate|self_harm|sexual|violence|jailbreak))?\]\]")
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def check_nesting(body: Any) -> None:
    """Refuse pathologically nested JSON before anything walks it recursively."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise azure_errors.invalid_request(
                f"The request body is nested more than {MAX_NESTING} levels deep.", None, "invalid_value"
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def strings_in(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_content_filter(*prompt_parts: Any) -> None:
    """``[[content_filter]]`` (or ``[[content_filter:hate]]``, ...) anywhere in the prompt: Azure's refusal."""
    for part in prompt_parts:
        for text in strings_in(part):
            found = CONTENT_FILTER_MARKER.search(text)
            if found:
                raise azure_errors.content_filtered(found.group(1) or "violence")


def check_context(deployment: Deployment, prompt: int, completion: int | None, param: str) -> None:
    model = deployment.model
    if prompt > model.input_limit:
        raise azure_errors.context_length_exceeded(model.input_limit, prompt, None, param)
    if prompt + (completion or 0) > model.context_window:
        raise azure_errors.context_length_exceeded(model.context_window, prompt, completion, param)


# --- field readers ---------------------------------------------------------------------------------------


def _type_error(param: str, expected: str, value: Any) -> AzureError:
    return azure_errors.invalid_request(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.", param, "invalid_type"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _int(body: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise azure_errors.invalid_request(
            f"Invalid '{name}': integer must be {bound}, got {value}.", name, "invalid_value"
        )
    return value


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _type_error(name, "a boolean", value)
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _type_error("stop", "a string or an array of strings", value)
    if len(value) > MAX_STOP_SEQUENCES:
        raise azure_errors.invalid_request(
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP_SEQUENCES}, "
            f"but got an array with length {len(value)} instead.",
            "stop",
            "array_above_max_length",
        )
    return tuple(value)


def _tools(raw: Any, nested: bool) -> tuple[Tool, ...]:
    """Function tools of chat (``{"type","function":{...}}``) or of responses (flat); others are ignored."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _type_error("tools", "an array", raw)
    tools: list[Tool] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _type_error(f"tools[{index}]", "an object", entry)
        if entry.get("type", "function") != "function":
            continue
        spec = entry.get("function") if nested else entry
        if not isinstance(spec, dict):
            raise _type_error(f"tools[{index}].function", "an object", spec)
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise azure_errors.invalid_request(
                f"Missing required parameter: 'tools[{index}]{'.function' if nested else ''}.name'.",
                f"tools[{index}]{'.function' if nested else ''}.name",
                "missing_required_parameter",
            )
        parameters = spec.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _type_error(f"tools[{index}].parameters", "an object", parameters)
        description = spec.get("description")
        tools.append(Tool(name, description if isinstance(description, str) else "", parameters or {"type": "object"}))
    return tuple(tools)


def _tool_choice(raw: Any, tools: tuple[Tool, ...], nested: bool) -> str:
    if raw is None:
        return "auto"
    if isinstance(raw, str):
        if raw not in ("none", "auto", "required"):
            raise azure_errors.invalid_request(
                f"Invalid value: '{raw}'. Supported values are: 'none', 'auto', and 'required'.",
                "tool_choice",
                "invalid_value",
            )
        if raw == "required" and not tools:
            raise azure_errors.invalid_request(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                "tool_choice",
                None,
            )
        return raw
    if isinstance(raw, dict):
        if raw.get("type") != "function":
            return "auto"  # allowed_tools and hosted tools: the model decides, as with auto
        spec = raw.get("function") if nested else raw
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or all(t.name != name for t in tools):
            raise azure_errors.invalid_request(
                f"Invalid value for 'tool_choice': tool {name!r} is not among the 'tools' of this request.",
                "tool_choice",
                "invalid_value",
            )
        return name
    raise _type_error("tool_choice", "a string or an object", raw)


def _output_format(raw: Any, param: str, nested: bool) -> tuple[str, dict[str, Any] | None]:
    if raw is None:
        return "text", None
    if not isinstance(raw, dict):
        raise _type_error(param, "an object", raw)
    kind = raw.get("type")
    if kind in (None, "text"):
        return "text", None
    if kind == "json_object":
        return "json_object", None
    if kind == "json_schema":
        spec = raw.get("json_schema") if nested else raw
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            where = f"{param}.json_schema.name" if nested else f"{param}.name"
            raise azure_errors.invalid_request(
                f"Missing required parameter: '{where}'.", where, "missing_required_parameter"
            )
        if schema is not None and not isinstance(schema, dict):
            raise _type_error(f"{param}.schema", "an object", schema)
        return "json_schema", schema or {"type": "object"}
    raise azure_errors.invalid_request(
        f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', and 'text'.",
        f"{param}.type",
        "invalid_value",
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(strings_in(content))


def _require_json_word(format_kind: str, *prompt_parts: Any) -> None:
    if format_kind != "json_object":
        return
    if not any("json" in text.lower() for part in prompt_parts for text in strings_in(part)):
        raise azure_errors.invalid_request(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            "messages",
            None,
        )


def _reasoning(deployment: Deployment, effort: Any, param: str) -> int:
    if effort is None:
        effort = "medium"
    if not isinstance(effort, str) or effort not in REASONING_TOKENS:
        raise azure_errors.invalid_request(
            f"Invalid value: '{effort}'. Supported values are: {', '.join(repr(e) for e in REASONING_TOKENS)}.",
            param,
            "invalid_value",
        )
    if not deployment.model.reasoning:
        return 0
    return REASONING_TOKENS[effort]


def _called_in_chat(messages: list[Any]) -> tuple[str, ...]:
    """Tools the assistant called after the last user message (``tool_calls`` and the legacy ``function_call``)."""
    called: list[str] = []
    for message in messages:
        if message.get("role") == "user":
            called = []
        elif message.get("role") == "assistant":
            calls = message.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("name"), str):
                    called.append(function["name"])
            legacy = message.get("function_call")
            if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
                called.append(legacy["name"])
    return tuple(called)


def _called_in_responses(items: list[Any]) -> tuple[str, ...]:
    """Function calls among the input items after the last user message."""
    called: list[str] = []
    for item in items:
        if isinstance(item, str) or item.get("role") == "user":
            called = []
        elif item.get("type") == "function_call" and isinstance(item.get("name"), str):
            called.append(item["name"])
    return tuple(called)


# --- operations --------------------------------------------------------------------------------------------


def chat_ask(body: dict[str, Any], deployment: Deployment, reply_tokens: int) -> tuple[Ask, int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        if messages is None:
            raise azure_errors.invalid_request(
                "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
            )
        raise _type_error("messages", "a non-empty array", messages)
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _type_error(f"messages[{index}]", "an object", message)
        if message.get("role") not in _ROLES:
            raise azure_errors.invalid_request(
                f"Invalid value for 'messages[{index}].role': expected one of {', '.join(sorted(_ROLES))}.",
                f"messages[{index}].role",
                "invalid_value",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _type_error(f"messages[{index}].content", "a string or an array", content)
    limit_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    if deployment.model.reasoning and body.get("max_tokens") is not None:
        raise azure_errors.invalid_request(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    limit = _int(body, limit_name, 1)
    tools = _tools(body.get("tools"), nested=True)
    format_kind, schema = _output_format(body.get("response_format"), "response_format", nested=True)
    logprobs = _bool(body, "logprobs", False)
    top_logprobs = _int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not logprobs:
        raise azure_errors.invalid_request(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is set.",
            "top_logprobs",
            "invalid_value",
        )
    ask = Ask(
        seed=seed_of(body),
        choices=_int(body, "n", 1, MAX_CHOICES) or 1,
        limit=limit,
        stop=_stop(body),
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools, nested=True),
        parallel_tool_calls=_bool(body, "parallel_tool_calls", True),
        after_tool_result=messages[-1].get("role") in ("tool", "function"),
        called_since_user=_called_in_chat(messages),
        last_user_text=next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""),
        output_format=format_kind,
        output_schema=schema,
        reply_tokens=reply_tokens,
        logprobs=logprobs,
        top_logprobs=top_logprobs or 0,
        reasoning_tokens=_reasoning(deployment, body.get("reasoning_effort"), "reasoning_effort"),
    )
    _bool(body, "stream", False)
    check_content_filter(messages)
    _require_json_word(format_kind, messages)
    prompt = chat_prompt_tokens(messages)
    if tools:
        prompt += count_value_tokens(body.get("tools"))
    if schema is not None:
        prompt += count_value_tokens(schema)
    check_context(deployment, prompt, limit, "messages")
    return ask, prompt


def responses_ask(body: dict[str, Any], deployment: Deployment, reply_tokens: int) -> tuple[Ask, int]:
    raw_input = body.get("input")
    if raw_input is not None and not isinstance(raw_input, str | list):
        raise _type_error("input", "a string or an array", raw_input)
    items = [raw_input] if isinstance(raw_input, str) else list(raw_input or [])
    for index, item in enumerate(items):
        if not isinstance(item, str | dict):
            raise _type_error(f"input[{index}]", "an object", item)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _type_error("instructions", "a string", instructions)
    limit = _int(body, "max_output_tokens", 1)
    tools = _tools(body.get("tools"), nested=False)
    text = body.get("text")
    if text is not None and not isinstance(text, dict):
        raise _type_error("text", "an object", text)
    format_kind, schema = _output_format((text or {}).get("format"), "text.format", nested=False)
    last = items[-1] if items else None
    user_texts = [
        _text_of(i) if isinstance(i, str) else _text_of(i.get("content"))
        for i in items
        if isinstance(i, str) or (isinstance(i, dict) and i.get("role") == "user")
    ]
    include = body.get("include")
    if include is not None and (not isinstance(include, list) or not all(isinstance(i, str) for i in include)):
        raise _type_error("include", "an array of strings", include)
    top_logprobs = _int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise _type_error("reasoning", "an object", reasoning)
    ask = Ask(
        seed=seed_of(body),
        limit=limit,
        reasoning_tokens=_reasoning(deployment, (reasoning or {}).get("effort"), "reasoning.effort"),
        logprobs="message.output_text.logprobs" in (include or []),
        top_logprobs=top_logprobs or 0,
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools, nested=False),
        parallel_tool_calls=_bool(body, "parallel_tool_calls", True),
        after_tool_result=isinstance(last, dict) and last.get("type") == "function_call_output",
        called_since_user=_called_in_responses(items),
        last_user_text=user_texts[-1] if user_texts else "",
        output_format=format_kind,
        output_schema=schema,
        reply_tokens=reply_tokens,
    )
    _bool(body, "stream", False)
    check_content_filter(raw_input, instructions)
    _require_json_word(format_kind, raw_input, instructions)
    prompt = count_value_tokens(raw_input) + count_value_tokens(instructions)
    if tools:
        prompt += count_value_tokens(body.get("tools"))
    if schema is not None:
        prompt += count_value_tokens(schema)
    check_context(deployment, prompt, limit, "input")
    return ask, prompt


def completions_ask(body: dict[str, Any], deployment: Deployment, reply_tokens: int) -> tuple[Ask, int]:
    prompt_value = body.get("prompt")
    if prompt_value is not None and not isinstance(prompt_value, str | list):
        raise _type_error("prompt", "a string or an array", prompt_value)
    limit = _int(body, "max_tokens", 1)
    logprobs = _int(body, "logprobs", 0, MAX_LEGACY_LOGPROBS)
    ask = Ask(
        seed=seed_of(body),
        choices=_int(body, "n", 1, MAX_CHOICES) or 1,
        limit=limit,
        stop=_stop(body),
        reply_tokens=reply_tokens,
        logprobs=logprobs is not None,
        top_logprobs=logprobs or 0,
    )
    _bool(body, "stream", False)
    check_content_filter(prompt_value)
    prompt = count_value_tokens(prompt_value)
    check_context(deployment, prompt, limit, "prompt")
    return ask, prompt
