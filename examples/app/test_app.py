"""Unit tests of the example app (standard library only): what CI runs before it registers a build.

Run: python3 test_app.py   (from the directory holding app.py, or with APP_DIR set)
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import unittest
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, os.environ.get("APP_DIR") or str(Path(__file__).resolve().parent))
import app


class ExampleAppTest(unittest.TestCase):
    def setUp(self) -> None:
        app.FAULTS.update({"error_rate": 0, "latency_ms": 0, "fail_health": False})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), app.Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.server_address[1], timeout=5)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read() or b"{}")
        conn.close()
        return response.status, data

    def test_health_reports_ok_and_the_version(self) -> None:
        status, body = self.request("GET", "/healthz")
        self.assertEqual((status, body["status"], body["version"]), (200, "ok", app.VERSION))

    def test_version_endpoint(self) -> None:
        status, body = self.request("GET", "/version")
        self.assertEqual((status, body["version"]), (200, app.VERSION))

    def test_failing_health_answers_503(self) -> None:
        self.request("POST", "/_fault", json.dumps({"fail_health": True}).encode())
        self.assertEqual(self.request("GET", "/healthz")[0], 503)

    def test_injected_errors_answer_500(self) -> None:
        self.request("POST", "/_fault", json.dumps({"error_rate": 1}).encode())
        status, body = self.request("GET", "/checkout")
        self.assertEqual((status, body["error"]), (500, "injected failure"))

    def test_a_malformed_fault_request_is_refused(self) -> None:
        status, body = self.request("POST", "/_fault", b"[1, 2]")
        self.assertEqual(status, 400)
        self.assertIn("expected a JSON object", str(body["error"]))

    def test_a_shipped_defect_applies_only_where_its_setting_is_on(self) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "defects.json")
            with open(path, "w") as handle:
                json.dump({"error_rate": 1, "only_if": "APP_TEST_SETTING"}, handle)
            os.environ.pop("APP_TEST_SETTING", None)
            app.load_defects(path)
            self.assertEqual(self.request("GET", "/checkout")[0], 200)
            os.environ["APP_TEST_SETTING"] = "true"
            self.addCleanup(os.environ.pop, "APP_TEST_SETTING", None)
            app.load_defects(path)
            self.assertEqual(self.request("GET", "/checkout")[0], 500)


if __name__ == "__main__":
    unittest.main(verbosity=2)
