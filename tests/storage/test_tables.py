from shared.storage.tables import table_key


def test_table_keys_escape_forbidden_characters():
    assert table_key("tenant/object") == "tenant%2Fobject"
    assert table_key("a#b?c\\d%e") == "a%23b%3Fc%5Cd%25e"
