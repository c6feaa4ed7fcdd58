"""A RabbitMQ node of our own: Debian's rabbitmq-server on free loopback ports, data in tmp."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from jobline.local import servers as local

# Debian's /usr/sbin wrappers switch to the rabbitmq user; the scripts they call do not.
SCRIPT_DIRS = ("/usr/lib/rabbitmq/bin",)


def rabbit_script(name: str) -> str | None:
    """The real rabbitmq-server or rabbitmqctl script, or None when RabbitMQ is not installed."""
    for directory in SCRIPT_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


class RabbitNode:
    """One rabbitmq-server, its own epmd, a unique node name; stopped with everything it forked."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port, self.dist_port, self.epmd_port = (local.free_port() for _ in range(3))
        self.node = f"jobline{os.getpid()}x{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        base.mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            # A killed worker's connection is noticed by the socket closing; keep
            # the broker's own checks quick as well.
            "heartbeat = 10\n"
        )
        (base / "enabled_plugins").write_text("[].\n")  # no management plugin
        (base / "rabbitmq-env.conf").write_text("")  # ignore /etc/rabbitmq/rabbitmq-env.conf
        self.env = {
            **os.environ,
            "HOME": str(base),  # the Erlang cookie lives here, shared with rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.epmd: local.Process | None = None
        self.server: local.Process | None = None

    def start(self, timeout: float = 90) -> RabbitNode:
        server = rabbit_script("rabbitmq-server")
        if server is None:
            raise local.ServerError("rabbitmq-server not found; run `make setup`")
        # epmd would otherwise outlive the node as a daemon; run our own in the foreground.
        self.epmd = local.Process(
            "epmd", [local.find_executable("epmd"), "-port", str(self.epmd_port)], env=self.env
        ).start()
        self.server = local.Process("rabbitmq", [server], env=self.env, log=self.base / "out.log")
        self.server.start()
        try:
            local.wait_until(lambda: local.port_open(self.port), timeout, "rabbitmq", self.server)
        except local.ServerError:
            self.stop()
            raise
        return self

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run rabbitmqctl against this node and return what it printed."""
        ctl = rabbit_script("rabbitmqctl")
        assert ctl is not None
        done = subprocess.run(
            [ctl, "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def stop(self) -> None:
        for process in (self.server, self.epmd):
            if process is not None:
                process.stop(timeout=30)
