"""A TCP proxy of the tests' own, between the S3 client and the real server (SeaweedFS), that
injects network and server faults, switched at runtime by the test:

- `refuse()`: the listener is closed and every open connection cut: connections are refused
  until `accept()` opens the same port again (or, `at_once=True`, each connection is closed as
  soon as it is accepted);
- `inject("cut", ...)`: forward the request head and half its body, then close both sides;
- `inject(500 | 503, ...)`: answer with an S3 XML error (and `Connection: close`) without
  forwarding;
- `inject("lost", ...)`: forward the request, read the server's whole answer, then close the
  client's connection without sending it (the request took effect; its answer was lost);
- `slow(seconds)`: wait that long before each piece (at most `PIECE` bytes) forwarded either way.

It is per connection: one thread reads the client's requests one after another (heads parsed
for the method, path and Content-Length: enough to pick the requests a fault is for), another
copies the server's bytes back as they come. That suffices for obstore's client, which sends
HTTP/1.1 keep-alive requests with a Content-Length (no chunked bodies, no `Expect:
100-continue`) and never pipelines: a request head comes only after the previous answer.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from urllib.parse import urlsplit

PIECE = 4096  # bytes forwarded at a time
Fault = str | int  # "cut", "lost", 500 or 503
_REASONS = {
    500: ("Internal Server Error", "InternalError"),
    503: ("Service Unavailable", "ServiceUnavailable"),
}


@dataclasses.dataclass
class Request:
    """A request the proxy read: its method, path and the fault it got ("" for none)."""

    method: str
    path: str
    fault: Fault = ""


@dataclasses.dataclass
class _Rule:
    fault: Fault
    count: int  # requests left to fault
    method: str
    path: str  # a part of the path the request must have


class FaultProxy:
    """Listens on a free port of 127.0.0.1 (`url`) and forwards to `upstream` ("http://host:port")."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Condition()
        self._rules: list[_Rule] = []
        self._delay = 0.0
        self._clients: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self.port = 0
        self.requests: list[Request] = []  # every request read, in order
        self.held = 0  # pieces waiting out a slow() delay now
        self.refused = 0  # connections closed at once, after refuse(at_once=True)
        self._at_once = False
        self.answers: list[bytes] = []  # the status lines of the answers "lost" threw away
        self.accept()
        self.url = f"http://127.0.0.1:{self.port}"

    def accept(self) -> None:
        """Listen (again, on the same port): connections are accepted and forwarded."""
        self._at_once = False
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)  # how soon the accepting thread sees refuse()
        self.port, self._listener = listener.getsockname()[1], listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    def refuse(self, at_once: bool = False) -> None:
        """Close the listener (new connections are refused), or with `at_once` keep it and
        close each connection as soon as it is accepted; cut every open connection."""
        with self._lock:
            self._at_once = at_once
            if not at_once:
                self._listener = None
            for client in self._clients:
                _hang_up(client)
        if not at_once and self._accepting is not None:
            self._accepting.join()  # it closes the listener: the port is free for accept()

    def inject(self, fault: Fault, count: int = 1, method: str = "", path: str = "") -> None:
        """Give `fault` to the next `count` requests whose method is `method` (any if "") and
        whose path holds `path`."""
        with self._lock:
            self._rules.append(_Rule(fault, count, method, path))

    def faults_left(self) -> int:
        """Requests the injected faults are still waiting for."""
        with self._lock:
            return sum(rule.count for rule in self._rules)

    def slow(self, seconds: float) -> None:
        """Wait `seconds` before each piece forwarded (0: no more); pieces waiting now are
        held for the new delay, counted from when they began to wait. A request read whole
        is still delivered after its client has gone, as a slow network may."""
        with self._lock:
            self._delay = seconds
            self._lock.notify_all()

    def clear(self) -> None:
        """No more faults: accept connections, no injected fault, no delay."""
        with self._lock:
            self._rules.clear()
        self.slow(0)
        self.accept()

    def close(self) -> None:
        self.clear()
        self.refuse()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._listener is listener:
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _take(self, method: str, path: str) -> Fault:
        with self._lock:
            for rule in self._rules:
                if rule.count > 0 and rule.method in ("", method) and rule.path in path:
                    rule.count -= 1
                    return rule.fault
            return ""

    def _pace(self) -> None:
        with self._lock:
            start = time.monotonic()
            self.held += 1
            while (left := start + self._delay - time.monotonic()) > 0:
                self._lock.wait(left)
            self.held -= 1

    def _serve(self, client: socket.socket) -> None:
        """One client connection: its requests, one after another."""
        with self._lock:
            if self._listener is None or self._at_once:  # refused (maybe while being accepted)
                self.refused += self._at_once
                client.close()
                return
            self._clients.add(client)
        try:
            upstream = socket.create_connection(self._upstream)
        except OSError:
            upstream = None
        back = threading.Thread(target=self._copy, args=(upstream, client), daemon=True)
        try:
            if upstream is None:
                return
            back.start()
            buffered = b""
            while (read := _read_head(client, buffered)) is not None:
                head, buffered = read
                method, path, length = _parse(head)
                fault = self._take(method, path)
                self.requests.append(Request(method, path, fault))
                body, buffered = buffered[:length], buffered[length:]
                if fault == "cut":
                    upstream.sendall(head + body[: length // 2])
                    if len(body) < length // 2:
                        upstream.sendall(_read(client, length // 2 - len(body)))
                    return
                body += _read(client, length - len(body))
                if fault in _REASONS:
                    client.sendall(_error(int(fault)))
                    return
                if fault == "lost":
                    self.answers.append(_lost(self._upstream, head, body))
                    return
                request = memoryview(head + body)
                for at in range(0, len(request), PIECE):
                    self._pace()
                    upstream.sendall(request[at : at + PIECE])
        except OSError:
            pass
        finally:
            with self._lock:
                self._clients.discard(client)
            for sock in (client, upstream):
                _hang_up(sock)
            if back.is_alive():
                back.join()
            client.close()
            if upstream is not None:
                upstream.close()

    def _copy(self, upstream: socket.socket, client: socket.socket) -> None:
        """The server's answers back to the client, as they come; its end of the connection too."""
        try:
            while data := upstream.recv(PIECE):
                self._pace()
                client.sendall(data)
        except OSError:
            pass
        _hang_up(client)


def _hang_up(sock: socket.socket | None) -> None:
    """Shut `sock` both ways (it wakes a thread reading it); it stays open until closed."""
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read(sock: socket.socket, count: int) -> bytes:
    """`count` bytes of `sock`; OSError if it ends before."""
    data = bytearray(count)
    view, at = memoryview(data), 0
    while at < count:
        got = sock.recv_into(view[at:], min(count - at, 1 << 16))
        if not got:
            raise ConnectionResetError("the client closed its connection within a request")
        at += got
    return bytes(data)


def _read_head(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes] | None:
    """(a request head, the bytes read after it); None when the client closed between requests."""
    while (end := buffered.find(b"\r\n\r\n")) < 0:
        got = sock.recv(1 << 16)
        if not got:
            return None
        buffered += got
    return buffered[: end + 4], buffered[end + 4 :]


def _parse(head: bytes) -> tuple[str, str, int]:
    """(method, path, Content-Length) of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    length = {name.strip().lower(): value.strip() for name, value in headers.items()}.get("content-length")
    return method, path, int(length or 0)


def _error(status: int) -> bytes:
    """An S3 error answer that closes the connection."""
    reason, code = _REASONS[status]
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>injected by faultproxy</Message><RequestId>faultproxy</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _lost(upstream: tuple[str, int], head: bytes, body: bytes) -> bytes:
    """Send the request on a connection of its own, asking the server to close it after the
    answer (Connection is not a signed header), read the whole answer; its status line."""
    with socket.create_connection(upstream) as conn:
        conn.sendall(head[:-2] + b"Connection: close\r\n\r\n" + body)
        answer = b"".join(iter(lambda: conn.recv(1 << 16), b""))
    return answer.split(b"\r\n", 1)[0]
