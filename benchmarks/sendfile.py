"""A fast static file server for the benchmarks, in a child process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import select
import signal
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from benchmarks.common import BenchError, child_env, kill_group, self_cmd, track, untrack


async def serve(root: Path, any_pool: bool = False) -> None:
    """HTTP/1.1 keep-alive GET/HEAD of files below ``root``, bodies sent with sendfile(2).

    Deliberately minimal (no ranges or validators: every benchmark run starts from nothing), so
    that the server costs almost no CPU and the clients are what is measured. With
    ``any_pool``, a missing file under pool/ is an empty 200, not a 404 (for a client that
    ignores checksums and only needs to learn what it would download).
    """
    loop = asyncio.get_running_loop()
    root = root.resolve()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readline()
                if not request.strip():
                    break
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    key, _, value = line.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                parts = request.decode("latin-1").split()
                method, target = parts[0], parts[1] if len(parts) > 1 else "/"
                version = parts[2] if len(parts) > 2 else "HTTP/1.0"
                keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                conn = b"" if keep else b"Connection: close\r\n"
                rel = posixpath.normpath(unquote(urlsplit(target).path)).lstrip("/")
                path = root / rel
                if method not in ("GET", "HEAD"):
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n")
                    writer.write(conn + b"\r\n")
                elif any_pool and rel.startswith("pool/") and not path.exists():
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%s\r\n" % conn)
                elif ".." in rel.split("/") or not path.is_file():
                    body = b"404 Not Found\n"
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n")
                    writer.write(b"Content-Length: %d\r\n%s\r\n" % (len(body), conn))
                    if method == "GET":
                        writer.write(body)
                else:
                    with path.open("rb") as fh:
                        size = os.fstat(fh.fileno()).st_size
                        writer.write(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        )
                        writer.write(b"Content-Length: %d\r\n%s\r\n" % (size, conn))
                        if method == "GET" and size:
                            await loop.sendfile(writer.transport, fh)
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=128)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)

    def parent_gone() -> None:
        # stdin is a pipe from the bench: EOF means the bench is gone, even if it was killed.
        if not os.read(0, 4096):
            loop.remove_reader(0)
            done.set()

    loop.add_reader(0, parent_gone)
    async with server:
        await done.wait()


class SendfileServer:
    """``_serve`` in a child process of its own, so it never competes for a client's GIL."""

    def __init__(self, root: Path, *, any_pool: bool = False) -> None:
        self.proc = subprocess.Popen(
            self_cmd("_serve", str(root), *(["--any-pool"] if any_pool else [])),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            start_new_session=True,
        )
        track(self.proc)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line.isdigit():
            self.stop()
            raise BenchError("the sendfile server did not start")
        self.url = f"http://127.0.0.1:{line}"

    def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait()
        untrack(self.proc)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                pipe.close()

    def __enter__(self) -> SendfileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
