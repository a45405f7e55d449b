"""A real ``mirrorkit api serve`` for tests: a subprocess on a free loopback port, with users
of every role, stopped (by its pid) at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from mirrorkit import api

ROLES = ("read", "upload", "publish", "admin")


@dataclass
class ApiServer:
    store: Path
    base: Path
    args: list[str] = field(default_factory=list)
    gnupghome: Path | None = None
    url: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    shared_users: Path | None = None  # another server's users file (its secrets given)

    @property
    def users_file(self) -> Path:
        return self.shared_users or self.base / "users"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def start(self) -> ApiServer:
        self.base.mkdir(parents=True, exist_ok=True)
        for role in ROLES:
            if role not in self.secrets:
                made = api.api_user_add(role, role=role, users=self.users_file, store=self.store)
                self.secrets[role] = made.secret
        cmd = [sys.executable, "-m", "mirrorkit", "--store", str(self.store)]
        if self.gnupghome is not None:
            cmd += ["--gnupghome", str(self.gnupghome)]
        cmd += ["api", "serve", "--listen", "127.0.0.1:0", "--users", str(self.users_file)]
        cmd += self.args
        with self.log_file.open("w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ}
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "://" not in line:
            self.stop()
            raise RuntimeError(f"api serve did not start: {line}{self.log_file.read_text()}")
        self.url = line.split(" at ", 1)[1].split()[0]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def auth(self, role: str) -> tuple[str, str]:
        return (role, self.secrets[role])

    def client(self, role: str | None = "admin", **kwargs: Any) -> httpx.Client:
        auth = None if role is None else self.auth(role)
        return httpx.Client(base_url=self.url, auth=auth, timeout=60, **kwargs)

    def wait_task(self, client: httpx.Client, task_id: int, limit: float = 60) -> dict[str, Any]:
        """Poll a task as CI scripts do, until it finished."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            task: dict[str, Any] = client.get(f"/api/tasks/{task_id}").json()
            if task["State"] in (2, 3):
                return task
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} did not finish")
