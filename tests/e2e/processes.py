"""Child processes of the end-to-end tier: servers started by the tests, and stopped by PID.

Every server the e2e fixtures start (Phoenix, Prometheus, the two llama.cpp servers) runs as a
child of the test session in its own process group, bound to 127.0.0.1 only, logging to a file
under pytest's temporary directory. :class:`ChildProcess` starts one, waits until it answers,
and stops it (SIGTERM, bounded wait, SIGKILL), checking that nothing of its group is left.

Where a server's executable comes from: an environment variable (an explicit choice, so the only
candidate), else repo-relative defaults. A missing executable skips the test, unless
``LOGPROBSCOPE_REQUIRE_E2E=1`` (set in CI): then it fails, so a missing server can never make
CI pass silently.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, NoReturn

import pytest

__all__ = [
    "OPENER",
    "REPO_ROOT",
    "ChildProcess",
    "assert_loopback_only",
    "clean_env",
    "find_executable",
    "free_port",
    "http_ok",
    "listening_addresses",
    "lost_port",
    "skip_or_fail",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

ENV_REQUIRE_E2E = "LOGPROBSCOPE_REQUIRE_E2E"
STOP_TIMEOUT = 15.0

# Never use a proxy for our loopback servers, whatever http_proxy says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str, *, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers a GET with a 2xx status now (no proxy, bounded wait)."""
    request = urllib.request.Request(url)
    try:
        with OPENER.open(request, timeout=timeout) as response:
            response.read()
            status: int = response.status
            return 200 <= status < 300
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except (urllib.error.URLError, OSError):
        return False


def skip_or_fail(what: str) -> NoReturn:
    """Skip the test for a missing server, or fail it when ``LOGPROBSCOPE_REQUIRE_E2E=1``."""
    if os.environ.get(ENV_REQUIRE_E2E) == "1":
        pytest.fail(f"{what} (required because {ENV_REQUIRE_E2E}=1)")
    pytest.skip(what)


def find_executable(env_var: str, defaults: Sequence[tuple[str, Path]], what: str) -> Path:
    """First executable candidate; ``$env_var``, when set, is the only candidate."""
    configured = os.environ.get(env_var)
    candidates = [(f"${env_var}", Path(configured))] if configured else list(defaults)
    for _origin, path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    tried = ", ".join(f"{path} ({origin})" for origin, path in candidates)
    skip_or_fail(f"{what} not found; tried {tried}")


def _process_group_pids(pgid: int) -> list[int]:
    """PIDs of all live processes in process group ``pgid`` (Linux /proc)."""
    pids: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return pids
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: fields after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def _decode_proc_address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc/net/tcp{,6} prints each 32-bit word in host (little-endian) order.
    host = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(host)), int(port_hex, 16)


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """``(address, port)`` of every listening TCP socket held by ``pid`` (Linux only).

    Returns an empty list where /proc is not available.
    """
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found: list[tuple[str, int]] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A == TCP_LISTEN
                found.append(_decode_proc_address(fields[1]))
    return sorted(found)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def assert_loopback_only(process: ChildProcess) -> None:
    for pid in _process_group_pids(process.pid) or [process.pid]:
        exposed = [a for a in listening_addresses(pid) if not _is_loopback(a[0])]
        if exposed:
            process.stop()
            pytest.fail(f"{process.name} (pid {pid}) listens outside loopback: {exposed}")


class ChildProcess:
    """A server started by the tests, in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        try:
            self._popen = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session => own process group, pgid == pid
            )
        except BaseException:
            self._log.close()
            raise
        self.pid: int = self._popen.pid

    def poll(self) -> int | None:
        """Return the exit code, or ``None`` while running."""
        return self._popen.poll()

    def log_tail(self, max_chars: int = 4000) -> str:
        """Return the end of the log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return text[-max_chars:]

    def wait_until(
        self, ready: Callable[[], bool], *, timeout: float, interval: float = 0.2
    ) -> float:
        """Poll ``ready()`` until true; return the seconds it took.

        Raises ``RuntimeError`` if the process exits first and ``TimeoutError`` after
        ``timeout`` seconds.
        """
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if ready():
                return time.monotonic() - start
            code = self.poll()
            if code is not None:
                raise RuntimeError(f"{self.name} exited with code {code} before it was ready")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} not ready within {timeout:.0f} s")
            time.sleep(interval)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process group, wait, SIGKILL if needed; check nothing is left."""
        try:
            if self._popen.poll() is None:
                _signal_group(self.pid, signal.SIGTERM)
                try:
                    self._popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(self.pid, signal.SIGKILL)
                    self._popen.wait(timeout=timeout)
            # The leader is reaped; take down anything it left in its group.
            deadline = time.monotonic() + timeout
            if _process_group_pids(self.pid):
                _signal_group(self.pid, signal.SIGTERM)
            while (left := _process_group_pids(self.pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if left:
                _signal_group(self.pid, signal.SIGKILL)
                time.sleep(0.5)
                left = _process_group_pids(self.pid)
            if left:
                raise RuntimeError(f"{self.name}: processes {left} of group {self.pid} survive")
        finally:
            self._log.close()

    @property
    def returncode(self) -> int | None:
        """Exit code once the process has been reaped."""
        return self._popen.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def lost_port(process: ChildProcess) -> bool:
    tail = process.log_tail(20000).lower()
    return any(s in tail for s in ("address already in use", "failed to bind"))


def clean_env(drop_prefixes: Sequence[str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
