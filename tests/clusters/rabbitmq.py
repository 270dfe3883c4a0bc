"""A RabbitMQ cluster of the tests' own: three ``rabbitmq-server`` nodes on this machine, beside (and never
touching) the machine's own broker on 5672.

Each node has its own node name (``<tag>-<n>@localhost``), AMQP and distribution ports, config file,
database, feature-flags file, logs and an empty plugins list, in folders owned by the ``rabbitmq`` user
(the server runs as that user, from the package's own start script, so it shares the machine's Erlang
cookie). The first node boots alone; the others join it (``stop_app``, ``join_cluster``, ``start_app``).
A node runs in its own process group so a test can ``kill -9`` it, or pause it (SIGSTOP) to cut it off
from its peers as a network partition would, and start it again on the same ports and data.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.system import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
QUEUES = "/usr/lib/rabbitmq/bin/rabbitmq-queues"
HOME = "/var/lib/rabbitmq"  # the rabbitmq user's home: its Erlang cookie is the machine's
USER = "rabbitmq"


def available() -> str | None:
    """Why a local RabbitMQ cluster cannot be started here, or None when it can."""
    if not (os.path.exists(SERVER) and os.path.exists(CTL)):
        return "the rabbitmq-server package is not installed"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return "there is no rabbitmq user"
    if os.geteuid() != 0:
        return "starting RabbitMQ nodes as the rabbitmq user needs root"
    return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


@dataclass
class RabbitNode:
    name: str  # short name, e.g. "hsab12cd-1"
    amqp_port: int
    dist_port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=HOME,
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(self.base / "feature_flags"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.base / "node.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def prepare(self) -> None:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users = none\n"
            # the suite shares a busy machine: fail over within seconds, never pause for a slow disk
            "disk_free_limit.absolute = 50MB\n"
            # A node cut off and back (a test pauses one) is restarted by the side that kept the majority
            # and rejoins; with RabbitMQ's default (ignore) the cluster would stay split for good.
            "cluster_partition_handling = autoheal\n"
        )
        (self.base / "rabbitmq-env.conf").write_text("")  # not the machine's (it names the node rabbit@)
        (self.base / "enabled_plugins").write_text("[].\n")
        uid, gid = pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid
        for path in [self.base, *self.base.rglob("*")]:
            os.chown(path, uid, gid)

    def start(self) -> None:
        """Start the node process (it boots in the background; see ``wait_booted``)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.node} is running"
        log = (self.base / "log" / "console.log").open("ab")
        self.proc = subprocess.Popen(
            [SERVER], env=self._env(), cwd=HOME, user=USER, group=USER, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1

    def wait_booted(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.amqp_port):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.node} exited with {self.proc.returncode}:\n{self.console()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.node} did not boot in {timeout_s}s:\n{self.console()[-3000:]}")
            time.sleep(0.2)

    def ctl(self, *args: str, timeout_s: float = 60, tool: str = CTL) -> str:
        """``rabbitmqctl -n <this node> ...`` run as the rabbitmq user (so with its Erlang cookie)."""
        result = subprocess.run(
            [tool, "-n", self.node, *args], env=self._env(), cwd=HOME, user=USER, group=USER,
            capture_output=True, text=True, timeout=timeout_s,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} on {self.node} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9 the whole node (the start script, the Erlang VM and its helpers)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def stop(self, timeout_s: float = 60) -> None:
        """Stop the node as an operator does (SIGTERM: it hands its queues' leads over and closes its
        connections), killing it only if it has not exited within ``timeout_s``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP the node: its peers and clients hear nothing from it, as in a network partition."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def signal_safe_resume(self) -> None:
        if self.running:
            self.resume()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console(self) -> str:
        path = self.base / "log" / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class RabbitCluster:
    nodes: list[RabbitNode] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def by_node(self, node: str) -> RabbitNode:
        return next(n for n in self.nodes if n.node == node)

    def running_node(self) -> RabbitNode:
        return next(n for n in self.nodes if n.running)

    def members(self) -> tuple[set[str], set[str]]:
        """(disc nodes, running nodes) as one running node sees them."""
        out = self.running_node().ctl("cluster_status", "--formatter", "json")
        status = json.loads(out)
        return set(status["disk_nodes"]), set(status["running_nodes"])

    def _ask(self, *args: str, timeout_s: float = 180) -> list[dict[str, object]]:
        """A ``--formatter json`` listing from any running node that answers (a node that just came
        back, or one under load, may be slow to)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for node in [n for n in self.nodes if n.running]:
                try:
                    return list(json.loads(node.ctl(*args, "--formatter", "json", "--quiet", timeout_s=30)))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError):
                    if time.monotonic() > deadline:
                        raise
            time.sleep(1)

    def queue_leader(self, queue: str, otherwise: str, timeout_s: float = 90) -> str:
        """The node that leads the quorum queue ``queue`` now, from the queue's record on a running node
        (a local read); ``otherwise`` when no node's CLI answers in time (each CLI call starts an Erlang
        VM, which on a loaded machine can take a minute)."""
        expr = (f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"{queue}">>)), '
                "{_, Node} = amqqueue:get_pid(Q), atom_to_list(Node).")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in [n for n in self.nodes if n.running]:
                try:
                    out = node.ctl("eval", expr, timeout_s=max(5.0, deadline - time.monotonic())).strip()
                    return out.splitlines()[-1].strip().strip('"')
                except (RuntimeError, subprocess.TimeoutExpired, IndexError):
                    pass
            time.sleep(1)
        return otherwise

    def move_leader(self, queue: str, to: RabbitNode, timeout_s: float = 90) -> str:
        """Hand the lead of the quorum queue ``queue`` to ``to`` (Raft leadership transfer, as the
        broker's own rebalancing does); returns the node that leads it afterwards."""
        expr = (f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"{queue}">>)), '
                f"rabbit_quorum_queue:transfer_leadership(Q, '{to.node}').")
        to.ctl("eval", expr, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        leader = ""
        while time.monotonic() < deadline:
            leader = self.queue_leader(queue, "", timeout_s=max(5.0, deadline - time.monotonic()))
            if leader == to.node:
                break
            time.sleep(0.5)
        return leader

    def queue_members(self, queue: str) -> list[str]:
        members = self.queue_members_all(queue)
        if queue not in members:
            raise LookupError(queue)
        return members[queue]

    def wait_members_online(self, queue: str, timeout_s: float = 180) -> float:
        """Wait until every node's member of the quorum queue ``queue`` is online again (a node that came
        back has caught its member up); returns how long that took."""
        started = time.monotonic()
        every = sorted(n.node for n in self.nodes)
        while True:
            rows = self._ask("list_queues", "name", "online", timeout_s=max(5.0, timeout_s))
            online = next((sorted(str(m) for m in row["online"]) for row in rows  # type: ignore[attr-defined]
                           if row["name"] == queue), [])
            if online == every:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{queue}: members online {online}, not {every}")
            time.sleep(1)

    def wait_whole(self, timeout_s: float = 240) -> float:
        """Wait until every node runs and each sees all the others, with no partition on record (after a
        node was cut off, autoheal restarts it: a minute or so); returns how long that took."""
        started = time.monotonic()
        every = sorted(n.node for n in self.nodes)
        while True:
            views: list[object] = []
            for node in self.nodes:
                try:
                    status = json.loads(node.ctl("cluster_status", "--formatter", "json", "--quiet", timeout_s=30))
                    views.append((sorted(status["running_nodes"]), status["partitions"]))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
                    views.append(type(exc).__name__)
            if all(view == (every, {}) or view == (every, []) for view in views):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the cluster is not whole after {timeout_s:.0f} s: {views}")
            time.sleep(2)

    def queue_members_all(self, starting: str) -> dict[str, list[str]]:
        """The members of every quorum queue whose name starts with ``starting`` (one CLI call)."""
        return {str(row["name"]): [str(m) for m in row["members"]]  # type: ignore[attr-defined]
                for row in self._ask("list_queues", "name", "members") if str(row["name"]).startswith(starting)}

    def connected_to(self, pid: int) -> list[RabbitNode]:
        """The nodes process ``pid`` (a service) holds AMQP connections to now (from ``ss``)."""
        out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True,
                             check=True).stdout
        ports = {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={pid}," in line}
        return [n for n in self.nodes if n.amqp_port in ports]

    def restart(self, node: RabbitNode, timeout_s: float = 180) -> None:
        """Start a stopped (or killed) node again on its ports and data. A member coming back syncs its
        database with its peers before it opens its AMQP listener, so an open port means it is back."""
        node.start()
        node.wait_booted(timeout_s)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                os.killpg(node.proc.pid, signal.SIGCONT)  # a paused node cannot stop
                os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(30)
                except subprocess.TimeoutExpired:
                    node.kill()
            node.proc = None


@contextmanager
def rabbit_cluster(workdir: Path, size: int = 3, timeout_s: float = 180) -> Iterator[RabbitCluster]:
    """Boot ``size`` nodes, cluster them, yield; always stop them and remove their folders."""
    tag = f"hs{uuid.uuid4().hex[:6]}"
    cluster = RabbitCluster()
    for i in range(1, size + 1):
        cluster.nodes.append(RabbitNode(f"{tag}-{i}", free_port(), free_port(), workdir / f"node{i}"))
    try:
        for node in cluster.nodes:
            node.prepare()
            node.start()
        for node in cluster.nodes:
            node.wait_booted(timeout_s)
            node.ctl("await_startup", timeout_s=timeout_s)
        first = cluster.nodes[0]
        for node in cluster.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app", timeout_s=timeout_s)
        disc, running = cluster.members()
        assert disc == running == {n.node for n in cluster.nodes}, (disc, running)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
