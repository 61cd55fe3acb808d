"""Network namespaces as stand-in machines for the scale-out test.

Each namespace gets a veth pair to the host side and its own addresses (10.213.N.2 inside,
10.213.N.1 on the host side). The test's Postgres and Redis listen on loopback only, so the
host side runs a plain TCP forwarder on 10.213.N.1 that relays to them: to a worker in the
namespace, ``10.213.N.1`` is simply the database/broker host, exactly as ``db-host`` is in the
README's several-machines section.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pytest

_MISSING = (
    "the scale-out test needs network namespaces: root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and the `ip` "
    "command from iproute2 (`apt-get install iproute2`)"
)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def require_netns() -> None:
    """Fail (never skip) with the missing capability named when namespaces cannot be made here."""
    if shutil.which("ip") is None:
        pytest.fail(f"{_MISSING}: `ip` not found on PATH", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail(f"{_MISSING}: not running as root (uid {os.geteuid()})", pytrace=False)
    probe = f"sbprobe{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        pytest.fail(f"{_MISSING}: `ip netns add` failed: {made.stderr.strip()}", pytrace=False)
    _ip("netns", "del", probe)


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str  # the host side of the veth: where this "machine" reaches the services
    own_address: str  # the namespace's own address

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr.strip()}")


@contextmanager
def namespace(index: int) -> Iterator[Namespace]:
    """A namespace with loopback up and a veth link to the host; removed afterwards."""
    tag = uuid.uuid4().hex[:5]
    name, host_if, ns_if = f"sb{tag}{index}", f"sbh{tag}{index}", f"sbn{tag}{index}"
    ns = Namespace(name, f"10.213.{index}.1", f"10.213.{index}.2")
    _check(_ip("netns", "add", name), "ip netns add")
    try:
        _check(_ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if), "ip link add veth")
        _check(_ip("link", "set", ns_if, "netns", name), "move veth into the namespace")
        _check(_ip("addr", "add", f"{ns.host_address}/24", "dev", host_if), "host address")
        _check(_ip("link", "set", host_if, "up"), "host link up")
        _check(_ip("-n", name, "addr", "add", f"{ns.own_address}/24", "dev", ns_if), "namespace address")
        _check(_ip("-n", name, "link", "set", ns_if, "up"), "namespace link up")
        _check(_ip("-n", name, "link", "set", "lo", "up"), "namespace loopback up")
        yield ns
    finally:
        _ip("link", "del", host_if)  # removes both ends
        _ip("netns", "del", name)


class TcpForwarder:
    """Relays connections accepted on (bind_host, bind_port) to (target_host, target_port)."""

    def __init__(self, bind_host: str, bind_port: int, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server = socket.create_server((bind_host, bind_port), reuse_port=False)
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.peers: set[str] = set()  # client addresses seen: proof of where connections came from
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, address = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.peers.add(address[0])
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        self._thread.join(timeout=2)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
