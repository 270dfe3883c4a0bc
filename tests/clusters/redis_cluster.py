"""A Redis Cluster of the tests' own: three primaries with one replica each (six ``redis-server``
processes on free loopback ports, in a temporary folder), beside the machine's own Redis on 6379.

Each node keeps its cluster config file, so one that is killed and started again on the same port
rejoins the cluster (as a replica of whichever node took over its slots). Failover is fast on purpose
(``cluster-node-timeout`` 2 s): a primary that stops answering is replaced within seconds.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

NODE_TIMEOUT_MS = 2000


def available() -> str | None:
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        return "redis-server and redis-cli are not installed (Debian: apt-get install redis-server)"
    return None


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int, first: int = 31000, spread: int = 9000, last: int = 50000) -> list[int]:
    """Ports whose cluster-bus twin (port + 10000) is free as well, from a start that varies between runs
    (tests/test_cluster.py takes its own range, away from these)."""
    ports: list[int] = []
    for port in range(first + (time.time_ns() // 1000) % spread, last):
        if _free(port) and _free(port + 10000):
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free loopback ports for a Redis Cluster")


@dataclass
class RedisNode:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(self.workdir), "--save", "",
             "--appendonly", "no", "--logfile", f"redis-{self.port}.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.wait_ping()

    def wait_ping(self, timeout_s: float = 20) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """kill -9: no chance to hand anything over."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        """SIGTERM, as an operator stops it (a primary first lets its replicas catch up)."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def info(self, section: str) -> dict[str, object]:
        with redis.Redis(port=self.port, decode_responses=True, socket_timeout=5) as client:
            return dict(client.info(section))

    def role(self) -> str:
        return str(self.info("replication")["role"])  # master | slave


@dataclass
class RedisClusterNodes:
    nodes: list[RedisNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.nodes[0].address}"

    def primaries(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.running and n.role() == "master"]

    def primary_for(self, key: str) -> RedisNode:
        """The node that serves ``key``'s slot now."""
        for node in self.nodes:
            if not node.running:
                continue
            with redis.Redis(port=node.port, decode_responses=True) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(key)

    def wait_promoted(self, key: str, old: RedisNode, timeout_s: float = 60) -> RedisNode:
        """Wait until another node than ``old`` serves ``key``'s slot (its replica was promoted)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                primary = self.primary_for(key)
            except (redis.ConnectionError, LookupError):
                primary = old
            if primary is not old:
                return primary
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica of {old.address} was promoted")
            time.sleep(0.1)

    def wait_failed_over(self, old: RedisNode, timeout_s: float = 60) -> float:
        """Wait until the running nodes serve every slot without ``old`` (a replica of it was promoted);
        returns how long that took."""
        started = time.monotonic()
        while True:
            for node in [n for n in self.nodes if n.running]:
                try:
                    with redis.Redis(port=node.port, decode_responses=True, socket_timeout=2) as client:
                        ok = "cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
                        ranges = client.execute_command("CLUSTER", "SLOTS")
                except redis.RedisError:
                    continue
                if ok and not any(int(primary[1]) == old.port for _, _, primary, *_ in ranges):
                    return time.monotonic() - started
                break
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"no replica of {old.address} took over")
            time.sleep(0.1)

    def wait_ok(self, timeout_s: float = 60) -> None:
        """Every running node says the cluster is ok, each slot served by a running primary."""
        deadline = time.monotonic() + timeout_s
        for node in [n for n in self.nodes if n.running]:
            with redis.Redis(port=node.port, decode_responses=True) as client:
                while "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the Redis Cluster is not ok on {node.address}")
                    time.sleep(0.1)

    def wait_replicas_in_sync(self, timeout_s: float = 60) -> None:
        """Every primary has a replica that is connected and has caught up."""
        deadline = time.monotonic() + timeout_s
        while True:
            synced = [p for p in self.primaries() if _has_synced_replica(p.info("replication"))]
            if len(synced) == 3 and len(self.primaries()) == 3:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("replicas did not catch up")
            time.sleep(0.2)

    def heal(self) -> None:
        """Every node running again, the cluster ok, every primary with a replica in step."""
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_ok()
        self.wait_replicas_in_sync()

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.kill()
                node.proc = None


def _has_synced_replica(info: dict[str, object]) -> bool:
    """A replica online and acknowledging (redis-py parses each ``slaveN`` line of INFO into a dict;
    under a stream of writes its offset trails the primary's by a moment, so ``lag`` is what tells)."""
    for key, value in info.items():
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online":
            if int(value.get("lag", 99)) <= 2:
                return True
    return False


@contextmanager
def redis_cluster(workdir: Path) -> Iterator[RedisClusterNodes]:
    """Six nodes, three primaries with one replica each; always stopped and their folder removed."""
    cluster = RedisClusterNodes([RedisNode(p, workdir) for p in cluster_ports(6)])
    try:
        for node in cluster.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[n.address for n in cluster.nodes], "--cluster-replicas", "1",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        cluster.wait_ok()
        cluster.wait_replicas_in_sync()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
