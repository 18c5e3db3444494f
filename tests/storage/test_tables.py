from shared.storage.tables import table_key


def test_table_keys_escape_forbidden_characters():
    assert table_key("tenant/object") == "tenant%2Fobject"
    assert table_key("a#b?c\\d%e") == "a%23b%3Fc%5Cd%25e"


def test_a_key_table_storage_would_refuse_is_refused_before_it_gets_there():
    import pytest

    from shared.storage.tables import MAX_KEY_CHARS

    assert table_key("a/b#c?d\\e%f\x00") == "a%2Fb%23c%3Fd%5Ce%25f%00"
    for value in ("", "x" * (MAX_KEY_CHARS + 1), "/" * (MAX_KEY_CHARS // 3 + 1)):
        with pytest.raises(ValueError):
            table_key(value)
