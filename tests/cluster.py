"""A Redis Cluster of the test's own (three masters, no replicas), and a Sentinel setup
(master, replica, sentinel), on free loopback ports.

Each node is a ``redis-server --cluster-enabled yes`` in a temporary folder (its
``nodes.conf`` is kept there, so a node killed and started again on its port comes
back with its node id and its slots); ``redis-cli --cluster create`` assigns the
16384 slots. Every process is stopped by its PID, every folder removed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.server import ROOT, free_port


def cluster_tools_missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: the Redis Cluster tests need it."
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
    # "Redis server v=7.0.15 sha=..."
    number = version.split("v=", 1)[1].split()[0] if "v=" in version else "0"
    if int(number.split(".")[0]) < 7:
        return f"redis-server {number} has no sharded pub/sub (SSUBSCRIBE needs Redis 7)."
    return None


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher, so at most 55535) is free too."""
    for _ in range(1000):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Node:
    port: int
    dir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(ROOT / "var" / "logs" / f"redis-cluster-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{self.port}.conf",
                    # A short node timeout: a killed master is marked failed (and, back, ok)
                    # within a second instead of fifteen.
                    "--cluster-node-timeout",
                    "1000",
                    "--dir",
                    str(self.dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = self.client(socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server --cluster-enabled on port {self.port} did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self, **options: float) -> redis.Redis:
        return redis.Redis(port=self.port, **options)

    def shard_channels(self) -> set[str]:
        return {name.decode() for name in self.client().execute_command("PUBSUB", "SHARDCHANNELS")}


@dataclass
class OwnCluster:
    """Three cluster masters of the test's own, with every slot assigned."""

    size: int = 3
    nodes: list[Node] = field(default_factory=list)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="notify-cluster-")))

    @property
    def url(self) -> str:
        """The notify URL: every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> OwnCluster:
        (ROOT / "var" / "logs").mkdir(parents=True, exist_ok=True)
        ports: set[int] = set()
        while len(ports) < self.size:
            ports.add(free_cluster_port())
        self.nodes = [Node(port, self.dir) for port in sorted(ports)]
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout: float = 20) -> None:
        """Until every node reports cluster_state:ok and knows every other."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self._ok(node) for node in self.nodes):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the test cluster did not reach cluster_state:ok")

    def _ok(self, node: Node) -> bool:
        client = node.client(socket_timeout=1)
        info = client.execute_command("CLUSTER", "INFO").decode()
        return "cluster_state:ok" in info and f"cluster_known_nodes:{self.size}" in info

    def node_for(self, channel: str) -> Node:
        """The master that owns ``channel``'s slot, as the cluster itself says."""
        client = self.nodes[0].client()
        slot = client.execute_command("CLUSTER", "KEYSLOT", channel)
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(node for node in self.nodes if node.port == master[1])
        raise LookupError(f"no node owns slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class OwnSentinel:
    """A master, its replica and one sentinel (quorum 1) of the test's own, which
    fails the master over to the replica within a few seconds of its death."""

    service: str = "notify-test"
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="notify-sentinel-")))
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    master_port: int = 0
    replica_port: int = 0
    sentinel_port: int = 0

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}"

    def _spawn(self, port: int, *args: str) -> None:
        (ROOT / "var" / "logs").mkdir(parents=True, exist_ok=True)
        with open(ROOT / "var" / "logs" / f"redis-sentinel-test-{port}.log", "ab") as log:
            self.processes[port] = subprocess.Popen(["redis-server", *args], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server {' '.join(args)} did not start")

    def start(self) -> OwnSentinel:
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        plain = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            # Sync a replica at once, not after the default 5 s wait for others to join it.
            "--repl-diskless-sync-delay",
            "0",
        ]
        try:
            self._spawn(self.master_port, "--port", str(self.master_port), *plain)
            self._spawn(
                self.replica_port,
                "--port",
                str(self.replica_port),
                *plain,
                "--replicaof",
                "127.0.0.1",
                str(self.master_port),
            )
            config = self.dir / "sentinel.conf"  # a sentinel rewrites its file: it must be its own
            config.write_text(
                f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 1\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                # Known from the start, instead of from the sentinel's first INFO rounds.
                f"sentinel known-replica {self.service} 127.0.0.1 {self.replica_port}\n"
            )
            self._spawn(self.sentinel_port, str(config), "--sentinel")
            # Ready once the replica is in sync and the sentinel knows it (it can fail over).
            sentinel = redis.Redis(port=self.sentinel_port)
            deadline = time.monotonic() + 20
            replica = redis.Redis(port=self.replica_port)
            while (
                not sentinel.sentinel_slaves(self.service)
                or replica.info("replication").get("master_link_status") != "up"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the test sentinel did not see the replica in sync")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def current_master(self) -> int:
        _host, port = redis.Redis(port=self.sentinel_port).sentinel_get_master_addr_by_name(self.service)
        return int(port)

    def kill(self, port: int) -> None:
        process = self.processes.get(port)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def wait_failover(self, old_port: int, timeout: float = 30) -> int:
        """Until the sentinel names another master, and that master says it is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.current_master()
            if port != old_port:
                role = redis.Redis(port=port).execute_command("ROLE")[0]
                if role == b"master":
                    return port
            time.sleep(0.1)
        raise RuntimeError("the sentinel did not fail over")

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)
