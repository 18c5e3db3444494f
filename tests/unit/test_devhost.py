import pytest

from shared.devhost import starlette_path
from shared.storage import table_key


@pytest.mark.parametrize("route, path", [
    ("openai/deployments/{deployment}/chat/completions", "/api/openai/deployments/{deployment}/chat/completions"),
    ("items/{id:int}", "/api/items/{id}"),
    ("items/{id:int?}", "/api/items/{id}"),
    ("files/{*rest}", "/api/files/{rest:path}"),
])
def test_route_templates_map_to_starlette_paths(route, path):
    assert starlette_path("api", route) == path


def test_table_keys_escape_forbidden_characters():
    assert table_key("tenant/object") == "tenant%2Fobject"
    assert table_key("a#b?c\\d%e") == "a%23b%3Fc%5Cd%25e"
