"""`jobline up`: the servers and processes of a local stack, started and stopped together."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobline.core import local_stack
from jobline.local import servers as local
from jobline.local.supervisor import RestartPolicy, Supervisor


@dataclass
class Stack:
    data_dir: Path
    api_port: int = 5000
    flower_port: int = 5555
    workers: int = 1
    concurrency: int | None = None
    # The embedded servers it started, and the jobline processes that use them.
    servers: list[local.Process] = field(default_factory=list)
    processes: list[local.Process] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flower_login: str = ""
    auth: bool = True
    worker_metrics: list[int] = field(default_factory=list)
    # The servers this stack started, recorded for the commands run beside it.
    started: dict[str, str] = field(default_factory=dict)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)

    def start(self, environ: Mapping[str, str]) -> None:
        """Start embedded servers where no URL is configured, then the jobline processes."""
        env = dict(environ)
        logs = self.data_dir / "logs"
        running = local_stack.find(self.data_dir)
        if running is not None and running.pid != os.getpid():
            raise local.ServerError(
                f"jobline up already runs on {self.data_dir} (pid {running.pid}); "
                "stop it first, or pick another --data-dir"
            )
        for port, what in ((self.api_port, "API"), (self.flower_port, "Flower")):
            if local.port_open(port):
                raise local.ServerError(f"port {port} for the {what} is taken; pick another")
        if not env.get("JOBLINE_REDIS_URL"):
            redis, env["JOBLINE_REDIS_URL"] = local.start_redis(self.data_dir / "redis")
            self.servers.append(redis)
            self.started["redis_url"] = env["JOBLINE_REDIS_URL"]
            self.notes.append(f"redis-server (AOF, everysec) {env['JOBLINE_REDIS_URL']}")
        if not env.get("JOBLINE_MONGO_URL"):
            mongo, env["JOBLINE_MONGO_URL"] = local.start_mongo(self.data_dir / "mongodb")
            self.servers.append(mongo)
            self.started["mongo_url"] = env["JOBLINE_MONGO_URL"]
            self.notes.append(f"embedded MongoDB (SecantusDB) {env['JOBLINE_MONGO_URL']}")
        self._secure(env)
        # The dashboard links to the Flower this stack starts.
        env.setdefault("JOBLINE_FLOWER_URL", f"http://127.0.0.1:{self.flower_port}/")
        # No `jobline sweep`: the workers take turns at sweeping (jobline.engine.healing).
        worker_args = ["worker"] + (
            [f"--concurrency={self.concurrency}"] if self.concurrency else []
        )
        self.worker_metrics = [local.free_port() for _ in range(self.workers)]
        commands = [
            *[
                (
                    f"worker-{n}",
                    [*worker_args, f"--hostname=worker{n}@%h", f"--metrics-port={port}"],
                    logs / f"worker-{n}.log",
                )
                for n, port in enumerate(self.worker_metrics, start=1)
            ],
            ("beat", ["beat"], logs / "beat.log"),
            ("flower", ["flower", f"--port={self.flower_port}"], logs / "flower.log"),
            ("api", ["api", f"--port={self.api_port}"], logs / "api.log"),
        ]
        for name, args, log in commands:
            self.processes.append(
                local.Process(name, local.jobline_argv(*args), env=env, log=log).start()
            )
        self._wait_for_ports()
        local_stack.write(
            self.data_dir,
            local_stack.LocalStack(
                pid=os.getpid(),
                api_url=f"http://127.0.0.1:{self.api_port}",
                flower_url=env["JOBLINE_FLOWER_URL"],
                **self.started,
            ),
        )

    def _secure(self, env: dict[str, str]) -> None:
        """Auth off unless asked for (the API listens on 127.0.0.1 only); Flower behind a login."""
        if not env.get("JOBLINE_AUTH"):
            env["JOBLINE_AUTH"] = "off"
        self.auth = env["JOBLINE_AUTH"].strip().lower() not in ("off", "false", "0", "no")
        if env.get("JOBLINE_FLOWER_BASIC_AUTH"):
            self.flower_login = "login from JOBLINE_FLOWER_BASIC_AUTH"
        else:
            password = secrets.token_urlsafe(18)
            env["JOBLINE_FLOWER_BASIC_AUTH"] = f"admin:{password}"
            self.flower_login = f"user admin, password {password}"

    def _wait_for_ports(self) -> None:
        api = next(p for p in self.processes if p.name == "api")
        local.wait_until(lambda: local.port_open(self.api_port), 60, "the API", api)
        flower = next(p for p in self.processes if p.name == "flower")
        local.wait_until(lambda: local.port_open(self.flower_port), 60, "Flower", flower)

    def banner(self) -> str:
        lines = [
            "jobline is up:",
            f"  Dashboard  http://127.0.0.1:{self.api_port}/",
            f"  API        http://127.0.0.1:{self.api_port}/api/v1/",
            f"  Swagger UI http://127.0.0.1:{self.api_port}/api/v1/docs",
            f"  Flower     http://127.0.0.1:{self.flower_port}/ ({self.flower_login})",
            f"  metrics    http://127.0.0.1:{self.api_port}/metrics, workers "
            + ", ".join(f"http://127.0.0.1:{p}/metrics" for p in self.worker_metrics),
            f"  API keys   required (create one: {self._command_beside('keys create')} --name NAME)"
            if self.auth
            else "  API keys   OFF: anyone on this machine can use the API "
            "(it listens on 127.0.0.1 only; JOBLINE_AUTH=on to require keys)",
            *[f"  {note}" for note in self.notes],
            f"  logs       {self.data_dir / 'logs'}",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def _command_beside(self, command: str) -> str:
        """``jobline COMMAND``, with a --data-dir to find this stack unless it is the default."""
        if self.data_dir == local_stack.DEFAULT_DATA_DIR.resolve():
            return f"jobline {command}"
        return f"jobline {command} --data-dir {self.data_dir}"

    def watch(self, stopping: threading.Event) -> str | None:
        """Restart what exits until asked to stop; returns why it gave up on a process, if so."""
        return Supervisor([*self.servers, *self.processes], self.restart_policy).watch(stopping)

    def stop(self) -> None:
        """Stop the jobline processes together, then the servers they use, then forget them.

        Workers finish their writes before the store goes. The record goes last:
        until the servers are down, a second ``jobline up`` on this data dir is
        refused rather than finding their files locked.
        """
        try:
            local.stop_together(self.processes)
            local.stop_together(self.servers)
        finally:
            local_stack.remove(self.data_dir, os.getpid())
