import pytest

from shared.local.devhost import starlette_path


@pytest.mark.parametrize(
    "route, path",
    [
        ("openai/deployments/{deployment}/chat/completions", "/api/openai/deployments/{deployment}/chat/completions"),
        ("items/{id:int}", "/api/items/{id}"),
        ("items/{id:int?}", "/api/items/{id}"),
        ("files/{*rest}", "/api/files/{rest:path}"),
    ],
)
def test_route_templates_map_to_starlette_paths(route, path):
    assert starlette_path("api", route) == path


def test_the_dev_host_keeps_access_logs_capped(monkeypatch):
    # uvicorn's Config sets uvicorn.access to the log level it is given, which would print every request line
    # with its query string; serve() caps it again afterwards.
    import logging

    import uvicorn

    from shared.local import devhost

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    logging.getLogger("uvicorn.access").setLevel(logging.NOTSET)
    devhost.serve(devhost.Starlette(), "127.0.0.1", 0, "debug")
    assert logging.getLogger("uvicorn.access").getEffectiveLevel() == logging.WARNING


def test_a_dev_host_at_info_level_does_not_log_query_strings(start_gateway, gateway_env):
    import httpx

    process = start_gateway({**gateway_env, "GATEWAY_DEVHOST_LOG_LEVEL": "info"})
    httpx.get(f"{process.api}/health", params={"probe": "query-string-9931"})
    httpx.post(f"{process.api}/openai/v1/embeddings?probe=query-string-9931", json={"model": "x", "input": "y"})
    assert "Uvicorn running" in process.output() or "Application startup complete" in process.output()
    assert "query-string-9931" not in process.output()
