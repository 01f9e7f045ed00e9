"""A throttling Secrets Manager: an HTTP proxy in front of moto's server that answers some calls
as AWS answers a call over its quota, and passes the others on. The tests put it between the
tool and moto (AWS_ENDPOINT_URL); benchmarks/bench_fleet.py puts it between a fleet and moto.

Secrets Manager speaks AWS's JSON 1.1 protocol: the operation is the X-Amz-Target header
(`secretsmanager.CreateSecret`), and a throttled call is answered HTTP 400 with
`{"__type": "ThrottlingException", "message": "Rate exceeded"}`, which botocore parses into
the error code ThrottlingException (and retries, in its standard and adaptive modes).

Which calls are throttled is a rule: a callable given the operation's name that says whether
to throttle this call. EveryNth and From throttle by count; Quotas throttles above AWS's
published per-second quotas, with a token bucket per group of operations."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# The calls that change a secret (each group has a quota of its own on AWS, 50 a second).
WRITES = frozenset(
    {
        "CreateSecret",
        "PutSecretValue",
        "UpdateSecret",
        "UpdateSecretVersionStage",
        "DeleteSecret",
        "RestoreSecret",
        "RotateSecret",
        "CancelRotateSecret",
        "TagResource",
        "UntagResource",
    }
)

# AWS's Secrets Manager quotas, in calls per second per account and Region ("AWS Secrets
# Manager quotas" in the Secrets Manager user guide): operations in one group share a quota.
QUOTA_GROUPS: dict[str, tuple[float, frozenset[str]]] = {
    "CreateSecret": (50, frozenset({"CreateSecret"})),
    "DeleteSecret": (50, frozenset({"DeleteSecret"})),
    "PutSecretValue, UpdateSecret, UpdateSecretVersionStage": (
        50,
        frozenset({"PutSecretValue", "UpdateSecret", "UpdateSecretVersionStage"}),
    ),
    "RestoreSecret": (50, frozenset({"RestoreSecret"})),
    "RotateSecret, CancelRotateSecret": (50, frozenset({"RotateSecret", "CancelRotateSecret"})),
    "TagResource, UntagResource": (50, frozenset({"TagResource", "UntagResource"})),
    "GetRandomPassword": (50, frozenset({"GetRandomPassword"})),
    "BatchGetSecretValue": (100, frozenset({"BatchGetSecretValue"})),
    "ListSecrets": (100, frozenset({"ListSecrets"})),
    "GetSecretValue, DescribeSecret": (10_000, frozenset({"GetSecretValue", "DescribeSecret"})),
}

THROTTLED_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})

Rule = Callable[[str], bool]


class Counted:
    """A rule by count: the calls of `operations` (the writes by default) are numbered from 1,
    and `throttles(number)` says which of them are throttled."""

    def __init__(self, operations: frozenset[str] = WRITES):
        self.operations, self.seen = operations, 0
        self._lock = threading.Lock()

    def __call__(self, operation: str) -> bool:
        if operation not in self.operations:
            return False
        with self._lock:
            self.seen += 1
            return self.throttles(self.seen)

    def throttles(self, number: int) -> bool:
        raise NotImplementedError


class EveryNth(Counted):
    """Throttle every nth call: the nth, the 2nth..."""

    def __init__(self, n: int, operations: frozenset[str] = WRITES):
        super().__init__(operations)
        self.n = n

    def throttles(self, number: int) -> bool:
        return number % self.n == 0


class From(Counted):
    """Let the first `passed` calls through, then throttle every one."""

    def __init__(self, passed: int, operations: frozenset[str] = WRITES):
        super().__init__(operations)
        self.passed = passed

    def throttles(self, number: int) -> bool:
        return number > self.passed


class Quotas:
    """AWS's quotas (QUOTA_GROUPS, each rate scaled by `scale`): a token bucket per group,
    holding one second's worth, refilled continuously; a call finding its bucket empty is
    throttled (and takes no token, as a throttled call does not count on AWS)."""

    def __init__(self, scale: float = 1.0, groups: dict = QUOTA_GROUPS):
        self._group = {op: name for name, (_, ops) in groups.items() for op in ops}
        self._rate = {name: rate * scale for name, (rate, _) in groups.items()}
        self._tokens = dict(self._rate)
        self._at = dict.fromkeys(self._rate, time.monotonic())
        self._lock = threading.Lock()

    def __call__(self, operation: str) -> bool:
        name = self._group.get(operation)
        if name is None:
            return False
        with self._lock:
            now = time.monotonic()
            rate = self._rate[name]
            self._tokens[name] = min(rate, self._tokens[name] + (now - self._at[name]) * rate)
            self._at[name] = now
            if self._tokens[name] < 1:
                return True
            self._tokens[name] -= 1
            return False


class QuotaProxy:
    """The proxy, on 127.0.0.1 at `url` once started; `calls` and `throttled` count by
    operation. `rule` may be replaced while it runs, and `status`, the HTTP status of a
    throttled answer: 400 as Secrets Manager sends it, or 429 (Too Many Requests) as some
    AWS front ends do."""

    def __init__(self, upstream: str, rule: Rule | None = None):
        self.upstream = urlsplit(upstream)
        self.rule: Rule = rule or (lambda _operation: False)
        self.status = 400
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> QuotaProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> QuotaProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def counts(self) -> dict:
        with self._lock:
            return {"calls": dict(self.calls), "throttled": dict(self.throttled)}

    def _decide(self, operation: str) -> bool:
        throttle = bool(operation) and self.rule(operation)
        with self._lock:
            if operation:
                self.calls[operation] += 1
            if throttle:
                self.throttled[operation] += 1
        return throttle

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - its name
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.forward()

            def do_GET(self) -> None:  # noqa: N802
                self.forward()

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                if proxy._decide(operation):
                    body = THROTTLED_BODY.encode()
                    self.answer(proxy.status, body, "application/x-amz-json-1.1")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                for attempt in (1, 2):  # a kept-alive connection moto closed: once more
                    connection = getattr(local, "connection", None)
                    if connection is None:
                        host, port = proxy.upstream.hostname, proxy.upstream.port
                        connection = local.connection = http.client.HTTPConnection(
                            host or "127.0.0.1", port, timeout=60
                        )
                    try:
                        connection.request(self.command, self.path, body, headers)
                        response = connection.getresponse()
                        data = response.read()
                        break
                    except (http.client.HTTPException, OSError):
                        connection.close()
                        local.connection = None
                        if attempt == 2:
                            raise
                content_type = response.getheader("Content-Type") or "application/json"
                self.answer(response.status, data, content_type)

            def answer(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "quota-proxy")
                self.end_headers()
                self.wfile.write(data)

        return Handler
