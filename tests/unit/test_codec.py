from __future__ import annotations

import pytest

from shared.adapters.codec import decode_key, encode_key, inverted_time_key
from tests.builders import T0


@pytest.mark.parametrize(
    "text", ["inspection/camera", "a#b?c\\d", "100%", "tab\there", "ünïcödé/東京/🚀", "\x7f\x9f", "", "%2F"]
)
def test_key_encoding_round_trips_and_removes_forbidden_characters(text: str) -> None:
    key = encode_key(text)
    assert decode_key(key) == text
    assert not any(ch in key for ch in "/\\#?") and not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in key)


def test_inverted_time_keys_sort_newest_first() -> None:
    from datetime import timedelta

    keys = [inverted_time_key(T0 + timedelta(seconds=s)) for s in (0, 1, 3600, 86400 * 365)]
    assert keys == sorted(keys, reverse=True)
    assert len({len(k) for k in keys}) == 1
