"""A stand-in for systemd's notify socket: a plain AF_UNIX datagram socket bound by the test.

It records every sd_notify datagram with its arrival time (monotonic) and the sender's PID
(SCM_CREDENTIALS, as systemd uses it for NotifyAccess=main).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Message:
    at: float
    pid: int
    fields: dict[str, str]


class NotifyPeer:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.settimeout(0.2)
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        creds_size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self._closed:
            try:
                data, ancdata, _, _ = self._sock.recvmsg(65536, creds_size)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            pid = 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append(Message(time.monotonic(), pid, fields))

    def with_field(self, key: str, value: str | None = None) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if key in m.fields and (value is None or m.fields[key] == value)]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 60.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.with_field(key, value)
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no {key}={value or '*'} within {timeout}s; got {self.messages[-5:]}")

    def environ(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.path}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
