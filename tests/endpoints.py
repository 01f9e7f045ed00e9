"""Local TCP endpoints that stand in for a database host: one that accepts and never answers
(tests/test_timeouts.py), and one that holds its first connection before relaying it to a real
server, as a paused Aurora Serverless v2 instance does while it resumes
(tests/test_topology.py)."""

from __future__ import annotations

import contextlib
import socket
import threading


class Endpoint:
    """A listener on a port of its own on 127.0.0.1, whose thread hands each connection it
    accepts to `accept`, until close(), which closes every socket kept in `sockets` too.
    A subclass sets what `accept` needs before calling this __init__, which starts the
    thread."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self.accept(connection)

    def accept(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.listener.close()
        for end in self.sockets:
            end.close()


class SilentEndpoint(Endpoint):
    """Accepts every connection, sends `greeting` (nothing by default) and then never
    answers: a database host that hangs."""

    def __init__(self, greeting: bytes = b""):
        self.greeting = greeting
        super().__init__()

    @property
    def accepted(self) -> list[socket.socket]:
        return self.sockets

    def accept(self, connection: socket.socket) -> None:
        self.sockets.append(connection)
        if self.greeting:
            connection.sendall(self.greeting)


class ResumingEndpoint(Endpoint):
    """A forwarder to a real server that holds its first connection `pause` seconds before
    relaying it (what an auto-paused Aurora Serverless v2 instance does while it resumes);
    every later connection is relayed at once."""

    def __init__(self, upstream: tuple[str, int], pause: float):
        self.upstream, self.pause = upstream, pause
        super().__init__()

    def accept(self, connection: socket.socket) -> None:
        pause = self.pause if self.connections == 1 else 0
        threading.Thread(target=self._relay, args=(connection, pause), daemon=True).start()

    def _relay(self, client: socket.socket, pause: float) -> None:
        if self.stopped.wait(pause):
            client.close()
            return
        server = socket.create_connection(self.upstream)
        self.sockets += [client, server]
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
