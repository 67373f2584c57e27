"""A real HTTP server that takes webhook POSTs, for the alert tests (unit and system tiers)."""

from __future__ import annotations

import http.server
import json
import threading
import time


class Receiver:
    """Listens on 127.0.0.1 (a free port); records each POST's JSON body and the time it came.

    ``status`` is what it answers, ``delay`` how long it waits first (a hanging endpoint).
    """

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.posts: list[tuple[float, dict, dict]] = []  # (time.time(), body, headers)
        self._arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._arrived:
                    receiver.posts.append((time.time(), json.loads(body), dict(self.headers)))
                    receiver._arrived.notify_all()
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0/B0/secret"
        threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True).start()

    @property
    def bodies(self) -> list[dict]:
        return [body for _, body, _ in self.posts]

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        """Block until at least ``count`` POSTs arrived (or the timeout); returns the bodies."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.posts) < count and time.monotonic() < deadline:
                self._arrived.wait(max(0.0, deadline - time.monotonic()))
        return self.bodies

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
