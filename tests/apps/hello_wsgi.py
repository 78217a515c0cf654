"""A trivial WSGI app: the server `mest bench` is measured against (docs/loadgen.md) and tested on.

``/`` answers ``Hello, world!`` and does nothing else, so a benchmark of it measures the server and the load
generator, not an app. The other paths exercise the generator: ``/chunked`` (no Content-Length, so HTTP/1.1
servers send it chunked), ``/auth`` (401 without ``X-API-Key: secret``), ``/slow`` (answers after 0.5 s),
``/status/NNN`` (answers NNN); anything else is a 404.
"""

import time

HELLO = b"Hello, world!"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [HELLO]
    if path == "/chunked":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (part for part in (b"Hello, ", b"chunked ", b"world!"))
    if path == "/auth":
        ok = environ.get("HTTP_X_API_KEY") == "secret"
        body = b"ok" if ok else b"missing or wrong X-API-Key"
        start_response("200 OK" if ok else "401 Unauthorized", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/slow":
        time.sleep(0.5)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"slow"]
    if path.startswith("/status/"):
        status = path.rsplit("/", 1)[1]
        start_response(f"{status} Status {status}", [("Content-Length", "0")])
        return [b""]
    if path == "/echo":  # the request body back, so tests can see which body each request carried
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Length", "9")])
    return [b"not found"]
