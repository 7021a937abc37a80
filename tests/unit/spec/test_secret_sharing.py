"""Secrets are never shared between environments unless the owner says so, and live ones stay live."""

from __future__ import annotations

from tests.unit.spec.helpers import load, one_problem

BASE = """
project: demo
environments:
  qa:
    tier: testing
    secrets:
      API_KEY: {{from_environment: {source}}}
  staging:
    tier: staging
    secrets:
      API_KEY: {{kind: api-key{share}}}
  production:
    tier: production
    secrets:
      API_KEY: {{kind: api-key{prod_share}}}
"""


def text(share: str = "", source: str = "staging", prod_share: str = "") -> str:
    return BASE.format(share=share, source=source, prod_share=prod_share)


def test_a_shared_secret_is_used_from_its_owner() -> None:
    spec = load(text(share=", share_with: [qa]"))
    assert spec.environments["qa"].secrets["API_KEY"].from_environment == "staging"


def test_sharing_is_never_the_default() -> None:
    problem = one_problem(text())
    assert problem.path == "environments.qa.secrets.API_KEY.from_environment"
    assert problem.message == "staging does not share API_KEY with qa"
    assert problem.hint == (
        "add qa to environments.staging.secrets.API_KEY.share_with (secrets are never shared by default)"
    )


def test_production_secrets_never_leave_production_tiers() -> None:
    problem = one_problem(text(share=", share_with: [qa]", prod_share=", share_with: [staging]"))
    assert problem.path == "environments.production.secrets.API_KEY.share_with"
    assert "its secrets never leave production tiers, and 'staging' is staging" in problem.message
    assert problem.hint == "give staging its own API_KEY with `conveyor secret set staging API_KEY`"


def test_an_unknown_source_suggests_the_right_name() -> None:
    problem = one_problem(text(share=", share_with: [qa]", source="stagin"))
    assert problem.message == "'stagin' cannot supply API_KEY" and problem.hint == "did you mean 'staging'?"


DATABASE = """
project: demo
environments:
  staging:
    tier: staging
    secrets:
      {secrets}
    resources:
      database: {{engine: postgres{extra}}}
"""


def test_a_postgres_database_needs_its_own_database_password_secret() -> None:
    assert load(DATABASE.format(secrets="POSTGRES_PASSWORD: {kind: database-password}", extra=""))
    missing = one_problem(DATABASE.format(secrets="API_KEY: {kind: api-key}", extra=""))
    assert missing.path == "environments.staging.resources.database.password_secret"
    assert missing.message == "secret 'POSTGRES_PASSWORD' is not declared in staging"
    wrong = one_problem(
        DATABASE.format(secrets="DB_PASS: {kind: api-key}", extra=", password_secret: DB_PASS")
    )
    assert wrong.message == "DB_PASS must be staging's own database-password secret"


def test_a_server_url_never_carries_a_password() -> None:
    problem = one_problem(
        DATABASE.format(
            secrets="POSTGRES_PASSWORD: {kind: database-password}",
            extra=", server: 'postgresql://admin:hunter2@db/postgres'",
        )
    )
    assert problem.message == "a password never goes in conveyor.yaml" and "PGPASSWORD" in (
        problem.hint or ""
    )
