"""`passos retrain`'s probe: anything but a Prefect server's 200 on /health is named at once."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from deployments.trigger import PrefectServerUnavailable, probe, ui_url


class NotPrefect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotPrefect)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()


def test_a_server_that_is_not_prefect_is_named(other_server: str) -> None:
    with pytest.raises(PrefectServerUnavailable, match=r"answered 404, not a Prefect server.*make prefect"):
        probe(other_server)


def test_the_ui_address_is_the_api_address_without_api() -> None:
    assert ui_url("http://127.0.0.1:4200/api") == "http://127.0.0.1:4200"
    assert ui_url("http://127.0.0.1:4200/api/") == "http://127.0.0.1:4200"
    assert ui_url("http://prefect.internal") == "http://prefect.internal"
