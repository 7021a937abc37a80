"""Redis namespaces and SQLite files: names, ACL rules, URLs and the spec rules (pure parts, ADR 0017)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conveyor.resources.redis_namespace import acl_rules, endpoint, names, password_hash, server_url, uses_tls
from conveyor.resources.sqlite_file import path_of, url_of
from conveyor.spec.data import redis_url_problem
from tests.unit.spec.helpers import load, one_problem


def test_names_keep_environments_apart_even_with_dashes() -> None:
    n = names("shop", "pr-12")
    assert (n.user, n.prefix, n.owner) == ("shop.pr-12", "shop:pr-12:", "shop:pr-12")
    # a dash may sit in either name; the separators never can, so no two pairs share a user or prefix
    assert names("a-b", "c").user != names("a", "b-c").user
    assert names("a-b", "c").prefix != names("a", "b-c").prefix


def test_the_acl_rules_confine_keys_and_channels_and_keep_passwords() -> None:
    rules = acl_rules(names("shop", "staging"))
    assert rules == [
        "on",
        "resetkeys",
        "~shop:staging:*",
        "resetchannels",
        "&shop:staging:*",
        "nocommands",
        "+@all",
        "-@admin",
        "-@dangerous",
        "-select",
    ]
    # `reset` or `resetpass` would drop the passwords running instances log in with
    assert not {"reset", "resetpass", "nopass"} & set(rules)


def test_a_password_reaches_redis_as_its_sha256() -> None:
    assert password_hash("pencil") == hashlib.sha256(b"pencil").hexdigest()


def test_the_server_defaults_to_the_variable_then_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_REDIS_URL", raising=False)
    assert server_url(None) == "redis://127.0.0.1:6379"
    monkeypatch.setenv("CONVEYOR_REDIS_URL", "rediss://cache.internal:6380")
    assert server_url(None) == "rediss://cache.internal:6380"
    assert endpoint(server_url(None)) == ("cache.internal", "6380") and uses_tls(server_url(None))
    assert endpoint("redis://admin@10.0.0.5") == ("10.0.0.5", "6379")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://admin:hunter2@cache:6379", "a password never goes in conveyor.yaml"),
        ("http://cache:6379", "'http' is not a Redis URL (redis:// or rediss://)"),
        ("redis://:6379", "the URL names no host"),
        ("redis://cache:6379/3", "the URL names a server only (no database number or options)"),
        ("redis://admin@cache:6379", None),
        ("rediss://cache", None),
    ],
    ids=["password", "scheme", "no-host", "db-number", "user", "tls"],
)
def test_server_urls_without_passwords(url: str, problem: str | None) -> None:
    assert redis_url_problem(url) == problem


def test_a_sqlite_file_lives_under_the_home_as_an_absolute_url(tmp_path: Path) -> None:
    path = path_of("dev", tmp_path)
    assert path == tmp_path / "data" / "dev.sqlite3"
    assert url_of(path) == f"sqlite:///{tmp_path}/data/dev.sqlite3" and url_of(path).startswith("sqlite:////")


CACHE = """
project: demo
environments:
  qa:
    tier: testing
    resources:
      cache: {{engine: redis, namespace: db-index, db: 2}}
  staging:
    tier: {tier}
    secrets:
      {secrets}
    resources:
      {resources}
"""


def spec_text(
    resources: str, secrets: str = "REDIS_PASSWORD: {kind: database-password}", tier: str = "staging"
) -> str:
    return CACHE.format(resources=resources, secrets=secrets, tier=tier)


class TestCacheRules:
    def test_an_acl_namespace_by_default_with_redis_password(self) -> None:
        cache = load(spec_text("cache: {engine: redis}")).environments["staging"].resources.cache
        assert cache is not None
        assert (cache.namespace, cache.password_secret, cache.db, cache.server) == (
            "acl",
            "REDIS_PASSWORD",
            None,
            None,
        )

    def test_an_undeclared_password_is_asked_for_at_provision_time(self) -> None:
        assert load(spec_text("cache: {engine: redis}", secrets="API_KEY: {kind: api-key}"))

    def test_the_password_is_a_database_password(self) -> None:
        problem = one_problem(spec_text("cache: {engine: redis}", secrets="REDIS_PASSWORD: {kind: api-key}"))
        assert problem.path == "environments.staging.resources.cache.password_secret"
        assert problem.message == "REDIS_PASSWORD must be staging's own database-password secret"

    def test_the_database_and_the_cache_never_share_a_password(self) -> None:
        problem = one_problem(
            spec_text(
                "{database: {engine: postgres}, cache: {engine: redis, password_secret: POSTGRES_PASSWORD}}",
                secrets="POSTGRES_PASSWORD: {kind: database-password}",
            ).replace("resources:\n      {", "resources: {")
        )
        assert problem.message == "POSTGRES_PASSWORD is already the database's password"

    def test_db_index_needs_a_number_and_only_it_takes_one(self) -> None:
        assert one_problem(spec_text("cache: {engine: redis, namespace: db-index}")).message == (
            "db-index needs a database number"
        )
        assert one_problem(spec_text("cache: {engine: redis, db: 3}")).message == (
            "db only applies to namespace: db-index"
        )

    def test_two_environments_never_share_a_database_index(self) -> None:
        problem = one_problem(spec_text("cache: {engine: redis, namespace: db-index, db: 2}"))
        assert problem.path == "environments.staging.resources.cache.db"
        assert problem.message == "database 2 is already the cache of environment 'qa'"

    def test_a_password_in_the_server_url_is_refused(self) -> None:
        problem = one_problem(spec_text("cache: {engine: redis, server: 'redis://admin:x@cache:6379'}"))
        assert problem.message == "a password never goes in conveyor.yaml"
        assert "CONVEYOR_REDIS_PASSWORD" in (problem.hint or "")


class TestSqliteRule:
    @pytest.mark.parametrize("tier", ["testing", "staging"])
    def test_sqlite_is_for_environments_without_real_users(self, tier: str) -> None:
        assert load(spec_text("database: {engine: sqlite}", secrets="{}", tier=tier))

    @pytest.mark.parametrize("tier", ["production", "dr"])
    def test_sqlite_is_refused_where_real_users_are(self, tier: str) -> None:
        problem = one_problem(spec_text("database: {engine: sqlite}", secrets="{}", tier=tier))
        assert problem.path == "environments.staging.resources.database.engine"
        assert problem.hint == "use engine: postgres"
