"""Names and SCRAM verifiers for provisioned databases (pure parts of the PostgreSQL edge)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from conveyor.resources.postgres import names, scram_verifier, server_url
from conveyor.spec.data import server_url_problem


def test_the_scram_verifier_matches_rfc_7677() -> None:
    # RFC 7677 section 3: user "user", password "pencil"; the exchange's proof and signature follow
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_verifier("pencil", salt, 4096)
    method, _, rest = verifier.partition("$")
    head, _, keys = rest.partition("$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert method == "SCRAM-SHA-256" and head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    auth = (
        b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    server_signature = hmac.new(server_key, auth, hashlib.sha256).digest()
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    client_signature = hmac.new(stored_key, auth, hashlib.sha256).digest()
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_a_verifier_never_contains_the_password_and_salts_differ() -> None:
    first, second = scram_verifier("hunter2-hunter2"), scram_verifier("hunter2-hunter2")
    assert first != second and "hunter2" not in first


def test_names_are_postgres_identifiers_within_63_bytes() -> None:
    n = names("Shop-Front", "pr-1234")
    assert n.database == n.owner == "shop_front_pr_1234" and n.logins == (
        "shop_front_pr_1234_a",
        "shop_front_pr_1234_b",
    )
    long = names("x" * 80, "production")
    assert all(len(x) <= 63 for x in (long.database, *long.logins))
    assert names("9lives", "dev").database.startswith("db_")
    assert names("shop", "staging", "custom").database == "custom"


def test_the_server_defaults_to_the_variable_then_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_POSTGRES_URL", raising=False)
    assert server_url(None) == "postgresql://postgres@127.0.0.1:5432/postgres"
    monkeypatch.setenv("CONVEYOR_POSTGRES_URL", "postgresql://admin@db:5433/postgres")
    assert server_url(None) == "postgresql://admin@db:5433/postgres"
    assert server_url("postgresql://x@y/z") == "postgresql://x@y/z"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://admin:s3cret@db/postgres", "a password never goes in conveyor.yaml"),
        ("mysql://db/x", "'mysql' is not a PostgreSQL URL"),
        ("postgresql:///postgres", "the URL names no host"),
        ("postgresql://admin@db:5432/postgres", None),
    ],
)
def test_server_urls_without_passwords(url: str, problem: str | None) -> None:
    assert server_url_problem(url) == problem
