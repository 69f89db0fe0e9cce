"""laptop/api_server.py: chalice local serves requests on threads; each must see its own request."""
from __future__ import annotations

import threading

from chalice import Chalice

from laptop.api_server import requests_per_thread


def _event(who: str) -> dict:
    return {"requestContext": {"resourcePath": "/who", "httpMethod": "GET"}, "headers": {"x-who": who},
            "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "body": None, "isBase64Encoded": False, "path": "/who", "httpMethod": "GET"}


def _concurrent(app_cls: type) -> dict[str, str]:
    app = app_cls("probe")
    barrier = threading.Barrier(2, timeout=10)

    @app.route("/who")
    def who():
        barrier.wait()  # both requests are in flight: the other has set its request by now
        return {"who": app.current_request.headers["x-who"]}
    seen: dict[str, str] = {}

    def call(name: str) -> None:
        seen[name] = app(_event(name), None)["body"]
    threads = [threading.Thread(target=call, args=(n,)) for n in ("tenant-a", "tenant-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen


def test_concurrent_requests_each_see_their_own_request():
    class Plain(Chalice):
        pass
    mixed = _concurrent(Plain)  # what chalice local does by itself: one request's headers for both
    assert len({body for body in mixed.values()}) == 1

    class PerThread(Chalice):
        pass
    requests_per_thread(PerThread)
    seen = _concurrent(PerThread)
    assert seen == {"tenant-a": '{"who":"tenant-a"}', "tenant-b": '{"who":"tenant-b"}'}
