"""A real forward proxy for the tests: Debian's tinyproxy, in the foreground, on 127.0.0.1.

    with TinyProxy(tmp_path / "proxy") as proxy:            # or auth=("user", "secret")
        ... fetch through proxy.url ...
        assert proxy.requests() == [("GET", "http://127.0.0.1:PORT/dists/...")]

Each instance has its own config file, log file and port; it is stopped by its pid. tinyproxy
logs one ``Request (file descriptor N): METHOD TARGET HTTP/1.x`` line per request it reads
(a CONNECT tunnel is one request, however many requests go through it).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["TinyProxy", "free_port"]

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/1\.\d")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TinyProxy:
    def __init__(
        self,
        where: Path,
        *,
        auth: tuple[str, str] | None = None,
        connect_ports: tuple[int, ...] = (),
        allow: tuple[str, ...] = (),
    ) -> None:
        exe = shutil.which("tinyproxy")
        if exe is None:
            raise RuntimeError("tinyproxy is not installed (apt-get install tinyproxy)")
        self.dir = Path(where)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "tinyproxy.log"
        self.port = free_port()
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{self.log}"',
            "LogLevel Connect",
            "MaxClients 200",
            # No XTinyproxy / Via rewriting concerns: the tests compare bodies, not headers.
        ]
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        # No ConnectPort line: CONNECT to any port (the test servers' ports are random);
        # connect_ports limits it, as most real proxies do (443 only).
        lines += [f"ConnectPort {p}" for p in connect_ports]
        # Allow lines: every other client (127.0.0.1 too, unless listed) gets 403.
        lines += [f"Allow {a}" for a in allow]
        self.conf = self.dir / "tinyproxy.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.url = f"http://127.0.0.1:{self.port}"
        with (self.dir / "stderr.txt").open("wb") as stderr:
            self._proc = subprocess.Popen(
                [exe, "-d", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        self._wait_listening()

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"tinyproxy exited with {self._proc.returncode}: "
                    f"{(self.dir / 'stderr.txt').read_text()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tinyproxy did not listen on 127.0.0.1:{self.port}")

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy read, in order."""
        if not self.log.exists():
            return []
        return [(m[1], m[2]) for m in _REQUEST.finditer(self.log.read_text(errors="replace"))]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> TinyProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
