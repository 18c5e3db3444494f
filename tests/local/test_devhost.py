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
