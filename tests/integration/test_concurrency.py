"""Two people acting at once: exactly one apply wins, concurrent writers keep the audit chain whole."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conveyor.spec import render_init
from tests.conftest import Server


def test_concurrent_applies_of_the_same_base_let_exactly_one_win(server: Server) -> None:
    base = render_init("shop")
    with server.admin() as http:
        assert http.post("/api/v1/spec/apply", json={"source": base}).json()["revision"] == 1
    variants = [base.replace("DB_POOL_SIZE: 50", f"DB_POOL_SIZE: {60 + i}", 1) for i in range(6)]

    def apply(source: str) -> int:
        with server.admin() as http:
            body = {"source": source, "expected_revision": 1}
            return http.post("/api/v1/spec/apply", json=body).status_code

    with ThreadPoolExecutor(len(variants)) as pool:
        codes = sorted(pool.map(apply, variants))
    assert codes == [200] + [409] * (len(variants) - 1)
    with server.admin() as http:
        assert [r["number"] for r in http.get("/api/v1/spec/revisions").json()] == [2, 1]
        assert http.get("/api/v1/audit/verify").json()["ok"]


def test_many_concurrent_writers_keep_the_chain_gap_free(server: Server) -> None:
    def add(i: int) -> int:
        with server.admin() as http:
            return http.post("/api/v1/users", json={"name": f"user{i}", "role": "viewer"}).status_code

    def same_name(_: int) -> int:
        with server.admin() as http:
            return http.post("/api/v1/users", json={"name": "twin", "role": "viewer"}).status_code

    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(add, range(24)))
        twins = sorted(pool.map(same_name, range(6)))
    assert added == [201] * 24
    assert twins == [201] + [409] * 5
    with server.admin() as http:
        verify = http.get("/api/v1/audit/verify").json()
        assert verify["ok"], verify
        events = http.get("/api/v1/audit/events", params={"limit": 10000}).json()
    seqs = sorted(e["seq"] for e in events)
    assert seqs == list(range(1, len(seqs) + 1))
    # each created user wrote a user.add and a token.create event
    assert sum(e["action"] == "user.add" for e in events) == 25
