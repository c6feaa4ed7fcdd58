"""Worker "hosts" on one machine: network namespaces behind a bridge, each with its own name.

Each host is a network namespace joined to a bridge on the host side by a veth
pair, with its own address in a private /24 chosen from 10.251.0.0/16 (one not
used on this machine). Processes run in it under ``unshare --uts`` with a
hostname of their own, so a job records which host ran it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobline.core.settings import Settings
from jobline.engine.queue import make_celery
from jobline.local import servers as local
from tests.conftest import settings_env


class NamespacesUnavailable(RuntimeError):
    """This machine does not let us make network namespaces (not root, no iproute2…)."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.251.N.0/24 that no address or route on this machine touches."""
    used = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    used += subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    start = os.getpid() % 200
    for n in range(200):
        net = ipaddress.IPv4Network(f"10.251.{(start + n) % 200 + 20}.0/24")
        if f"10.251.{net.network_address.packed[2]}." not in used:
            return net
    raise NamespacesUnavailable("no free 10.251.N.0/24 subnet")


@dataclass
class Lan:
    """A bridge with an address on the host side and ``size`` namespaces behind it."""

    size: int
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000:05d}")
    subnet: ipaddress.IPv4Network = field(init=False)
    namespaces: list[str] = field(default_factory=list)
    _bridge_made: bool = False

    @property
    def bridge(self) -> str:
        return f"jlbr{self.tag}"

    @property
    def gateway(self) -> str:
        """The host side's address: servers the hosts use listen here."""
        return str(self.subnet.network_address + 1)

    def address(self, index: int) -> str:
        return str(self.subnet.network_address + 11 + index)

    def hostname(self, index: int) -> str:
        return f"host-{chr(ord('a') + index)}-{self.tag}"

    def create(self) -> Lan:
        if os.geteuid() != 0:
            raise NamespacesUnavailable("network namespaces need root")
        for tool in ("ip", "unshare"):
            if shutil.which(tool) is None:
                raise NamespacesUnavailable(f"{tool} is not installed (iproute2, util-linux)")
        self.subnet = _free_subnet()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
        except subprocess.CalledProcessError as exc:
            raise NamespacesUnavailable(f"cannot make a bridge: {exc.stderr.strip()}") from exc
        self._bridge_made = True
        try:
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index in range(self.size):
                self._add_host(index)
        except subprocess.CalledProcessError as exc:
            self.remove()
            raise NamespacesUnavailable(f"cannot make a namespace: {exc.stderr.strip()}") from exc
        return self

    def _add_host(self, index: int) -> None:
        ns = f"jobline-{self.tag}-{index}"
        outside, inside = f"jlh{self.tag}{index}", f"jln{self.tag}{index}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("link", "set", inside, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def remove(self) -> None:
        """Delete the namespaces (and with them their veth pairs) and the bridge."""
        for ns in self.namespaces:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)
        self.namespaces.clear()
        if self._bridge_made:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "del", self.bridge)
            self._bridge_made = False

    def run_argv(self, index: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside host ``index``: its namespace and its own hostname."""
        return [
            "ip", "netns", "exec", self.namespaces[index],
            "unshare", "--uts",
            "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname(index),
            *argv,
        ]  # fmt: skip


def worker_node(lan: Lan, index: int) -> str:
    return f"worker@{lan.hostname(index)}"


def start_remote_worker(
    lan: Lan, index: int, settings: Settings, log: Path, *args: str
) -> local.Process:
    """A `jobline worker` on host ``index`` (see wait_answering)."""
    node = worker_node(lan, index)
    argv = lan.run_argv(index, local.jobline_argv("worker", f"--hostname={node}", *args))
    return local.Process(node, argv, env=settings_env(settings), log=log).start()


def wait_answering(settings: Settings, workers: Sequence[local.Process], timeout: float) -> None:
    """Wait until every worker answers a ping over the broker."""
    app = make_celery(settings)
    deadline = time.monotonic() + timeout
    waiting = {w.name for w in workers}
    while waiting and time.monotonic() < deadline:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"{w.name} exited at start; see {w.log}")
        for reply in app.control.ping(timeout=0.5):
            waiting -= set(reply)
    if waiting:
        raise RuntimeError(f"{sorted(waiting)} did not answer within {timeout:.0f}s")


def start_servers(host: str, base: Path) -> tuple[list[local.Process], str, str]:
    """redis-server (AOF on) and SecantusDB listening on ``host`` only, for the hosts to reach."""
    redis_port, mongo_port = local.free_port(), local.free_port()
    # Redis refuses clients beyond loopback unless it has a password, as it should.
    password = secrets.token_urlsafe(16)
    redis = local.Process(
        "redis",
        [
            local.find_executable("redis-server"),
            "--bind", host, "--port", str(redis_port), "--dir", str(base),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--requirepass", password,
        ],
        log=base / "redis.log",
    ).start()  # fmt: skip
    mongo = local.Process(
        "mongodb",
        [
            sys.executable, "-m", "jobline.local.embedded_mongo",
            "--host", host, "--port", str(mongo_port),
            "--storage-path", str(base / "mongodb"),
        ],
        log=base / "secantusd.log",
    ).start()  # fmt: skip
    try:
        for process, port in ((redis, redis_port), (mongo, mongo_port)):
            local.wait_until(lambda p=port: local.port_open(p, host), 60, process.name, process)
    except local.ServerError:
        redis.stop()
        mongo.stop()
        raise
    redis_url = f"redis://:{password}@{host}:{redis_port}/0"
    return [redis, mongo], redis_url, f"mongodb://{host}:{mongo_port}"
