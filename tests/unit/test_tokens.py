"""Token material: random, recognisable, and never stored in clear."""

from __future__ import annotations

from conveyor.auth.tokens import display_prefix, hash_token, looks_like_token, new_token


def test_tokens_are_unique_and_long() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(looks_like_token(t) and len(t) >= 40 for t in tokens)


def test_the_stored_hash_does_not_contain_the_token() -> None:
    token = new_token()
    digest = hash_token(token)
    assert len(digest) == 64 and token[4:] not in digest
    assert hash_token(token) == digest


def test_the_display_prefix_reveals_only_a_few_characters() -> None:
    token = new_token()
    assert token.startswith(display_prefix(token)) and len(display_prefix(token)) == 8


def test_garbage_is_not_a_token() -> None:
    assert not looks_like_token("Bearer abc")
    assert not looks_like_token("cvy_short")
