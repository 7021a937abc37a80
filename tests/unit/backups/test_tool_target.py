"""What a PostgreSQL client tool gets for a URL: argv without the password, which goes in its environment."""

from __future__ import annotations

import pytest

from conveyor.backups.pgtools import tool_target


class TestPasswordLeavesTheArgv:
    @pytest.mark.parametrize(
        ("url", "argv_url", "password"),
        [
            (
                "postgresql://admin:s3cret@db.internal:5432/shop",
                "postgresql://admin@db.internal:5432/shop",
                "s3cret",
            ),
            (
                "postgresql+psycopg://admin:p%40ss%3Aw%2Fd@127.0.0.1/shop",
                "postgresql://admin@127.0.0.1/shop",
                "p@ss:w/d",
            ),
            (
                "postgresql://admin@[::1]:5433/shop?password=hunter2&sslmode=require",
                "postgresql://admin@[::1]:5433/shop?sslmode=require",
                "hunter2",
            ),
            (
                "postgresql://:only-a-password@db.internal/shop",
                "postgresql://db.internal/shop",
                "only-a-password",
            ),
            (
                "postgresql://admin:@db.internal/shop?options=-c%20search_path%3Dapp+x",
                "postgresql://admin@db.internal/shop?options=-c%20search_path%3Dapp+x",
                "",
            ),
        ],
        ids=[
            "user-info",
            "percent-encoded",
            "query-parameter",
            "no-user",
            "empty-password-query-kept-as-written",
        ],
    )
    def test_the_url_for_argv_has_no_password_and_the_environment_carries_it(
        self, url: str, argv_url: str, password: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PGPASSWORD", raising=False)
        safe, env = tool_target(url)
        assert safe == argv_url
        assert env["PGPASSWORD"] == password
        if password:
            assert password not in safe

    def test_without_a_password_the_tool_authenticates_as_the_server_does(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PGPASSWORD", "the-server-process-own")
        safe, env = tool_target("postgresql://postgres@127.0.0.1:5432/postgres")
        assert safe == "postgresql://postgres@127.0.0.1:5432/postgres"
        assert env["PGPASSWORD"] == "the-server-process-own"  # inherited, not replaced

    def test_a_password_in_the_url_wins_over_the_inherited_one(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PGPASSWORD", "the-server-process-own")
        _, env = tool_target("postgresql://admin:from-url@127.0.0.1/db")
        assert env["PGPASSWORD"] == "from-url"
