"""Redis Cluster: the whole path again, on a real local cluster started by this module.

Three ``redis-server`` masters in cluster mode (no replicas) on loopback ports, in a temporary
directory, joined with ``redis-cli --cluster create``, and stopped afterwards. Every test of
``tests/test_whole_path.py`` is collected here a second time, with ``system`` pointed at the cluster
(``REDIS_URL=redis+cluster://...``). On top of that: every Lua script touches only the keys it is given
(so one slot), one connection's keys share a slot, and the ``changes`` channel is heard whichever node
published.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path

import orjson
import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from shared.keys import Keys
from shared.redis import make_redis, redis_client
from shared.store import Store
from tests import test_whole_path as whole_path
from tests.clusters.redis_cluster import cluster_ports
from tests.signing import standard_webhooks_headers
from tests.system import System, start_system

NODES = 3

# Collect every whole-path test here too; the ``system`` fixture below runs them on the cluster.
for _name, _test in vars(whole_path).items():
    if _name.startswith("test_") and callable(_test):
        globals()[_name] = _test


def _cluster_ports(count: int) -> list[int]:
    return cluster_ports(count, first=21000, spread=5000, last=30000)


def _wait_ping(port: int) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.ping():
                client.close()
                return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_cluster_ok(ports: list[int]) -> None:
    deadline = time.monotonic() + 20
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True)
        while "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.1)
        client.close()


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert server and cli, "redis-server and redis-cli are needed (Debian: apt-get install redis-server)"
    workdir: Path = tmp_path_factory.mktemp("redis-cluster")
    ports = _cluster_ports(NODES)
    procs = [
        subprocess.Popen(
            [server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{p}.conf", "--dir", str(workdir), "--save", "",
             "--appendonly", "no", "--logfile", f"redis-{p}.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        for p in ports:
            _wait_ping(p)
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )
        _wait_cluster_ok(ports)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


@pytest.fixture
async def system(amqp_url: str, cluster_url: str, prefix: str, amqp_cleanup: None) -> AsyncIterator[System]:
    """The three services on the real broker and the Redis Cluster (keys go with the cluster)."""
    async with start_system(amqp_url, cluster_url, prefix) as running:
        yield running


# --- the cluster itself --------------------------------------------------------------------------


async def test_cluster_url_gives_a_cluster_client(cluster_url: str) -> None:
    async with redis_client(cluster_url) as client:
        assert isinstance(client, RedisCluster)
        assert await client.ping()
        nodes = client.get_primaries()
        assert len(nodes) == NODES


def test_one_connections_keys_share_a_slot() -> None:
    """Every key builder that takes a connection id (including ones added later) tags it."""
    keys, cid = Keys("whs"), "0123456789abcdef0123456789abcdef"
    names = []
    for _, builder in inspect.getmembers(keys, inspect.ismethod):
        params = list(inspect.signature(builder).parameters)
        if params and params[0] == "cid":
            names.append(builder(cid, *["x"] * (len(params) - 1)))
    assert len(names) >= 4
    assert {key_slot(name.encode()) for name in names} == {key_slot(cid.encode())}
    assert all(f"{{{cid}}}" in name for name in names)
    # a different connection lands elsewhere (hash tags spread connections over the slots)
    assert key_slot(Keys("whs").conn("f" * 32).encode()) != key_slot(keys.conn(cid).encode())


_CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?")
_LOCAL = re.compile(r"local\s+([\w\s,]+?)\s*=\s*([^\n]+)")
KEYLESS = {"PUBLISH", "TIME", "PING"}


def _key_aliases(source: str) -> set[str]:
    """Local names bound to ``KEYS[n]`` (``local conn, list = KEYS[1], KEYS[2]``)."""
    aliases: set[str] = set()
    for names, values in _LOCAL.findall(source):
        for name, value in zip(names.split(","), values.split(","), strict=False):
            if re.fullmatch(r"KEYS\[\d+\]", value.strip()):
                aliases.add(name.strip())
    return aliases


def _lua_scripts() -> list[tuple[str, str]]:
    folder = resources.files("shared").joinpath("lua")
    return [(f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".lua")]


def test_every_lua_script_touches_only_the_keys_it_is_given() -> None:
    """Redis does not stop a script from reaching an undeclared key on the same node, so look: every
    key a script names must come from KEYS (which the client routes, and which share one slot)."""
    scripts = _lua_scripts()
    assert len(scripts) >= 4
    for name, source in scripts:
        aliases = _key_aliases(source)
        calls = _CALL.findall(source)
        assert calls, name
        for command, first in calls:
            if command.upper() in KEYLESS:
                continue
            arg = first.strip()
            assert re.fullmatch(r"KEYS\[\d+\]", arg) or arg in aliases, f"{name}: {command} {arg}"


async def test_changes_channel_is_heard_across_the_cluster(system: System, cluster_url: str) -> None:
    """Changes are published from the node that owns each connection's slot; a subscriber on one node
    hears them all (classic PUBLISH is broadcast to every node)."""
    listener = make_redis(cluster_url)
    pubsub = listener.pubsub()  # what the status API's live stream uses
    await pubsub.subscribe(Keys(system.common["redis_prefix"]).changes)
    try:
        conns = [await system.create() for _ in range(6)]  # spread over the three masters
        body = orjson.dumps({"type": "ping"})
        for conn in conns:
            headers = standard_webhooks_headers(conn["secret"], body, f"msg_{conn['id']}")
            status, _ = await system.post_hook(conn["webhook_url"], body, headers)
            assert status == 202
        heard = await _collect(pubsub, want={c["id"] for c in conns}, state="connected")
        assert heard == {c["id"] for c in conns}
    finally:
        await pubsub.aclose()
        await listener.aclose()
    slots = {key_slot(Keys("x").conn(c["id"]).encode()) for c in conns}
    assert len(slots) == len(conns)


async def _collect(pubsub: object, want: set[str], state: str) -> set[str]:
    heard: set[str] = set()
    deadline = time.monotonic() + 15
    while heard != want and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)  # type: ignore[attr-defined]
        if message is not None:
            change = orjson.loads(message["data"])
            if change["state"] == state:
                heard.add(change["id"])
        await asyncio.sleep(0)
    return heard


async def test_state_counters_on_the_cluster(system: System, cluster_url: str) -> None:
    conn = await system.create()
    body = orjson.dumps({"type": "ping"})
    await system.post_hook(conn["webhook_url"], body, standard_webhooks_headers(conn["secret"], body, "msg_c1"))
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    client = make_redis(cluster_url)
    try:
        counts = await client.hgetall(Keys(system.common["redis_prefix"]).state_counts)
    finally:
        await client.aclose()
    assert counts == {"pending": "0", "connected": "1"}


async def test_recount_rebuilds_the_state_counters_on_every_node(system: System, cluster_url: str) -> None:
    """The operator's repair scans every master of the cluster and replaces drifted counters."""
    conns = [await system.create() for _ in range(5)]
    status, _ = await system.api("DELETE", f"/v1/connections/{conns[0]['id']}")
    assert status == 200
    async with redis_client(cluster_url) as client:
        store = Store(client, system.common["redis_prefix"])
        await client.hset(store.keys.state_counts, mapping={"pending": 99, "failed": 7})  # drifted
        assert await store.recount_states() == {"pending": 4, "connected": 0, "failed": 0, "disconnected": 1}
        assert await store.state_counts() == {"pending": 4, "connected": 0, "failed": 0, "disconnected": 1}
