"""Every Lua script of the project, registered in one place.

Each ``*.lua`` file here is one atomic Redis transition (its header comment says its KEYS, ARGV and
reply). ``Scripts.register(client)`` registers them all on a client; only ``shared/store.py`` and
``shared/notify_store.py`` run them. Every script touches the keys of one connection (one cluster
slot), or one key of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

from shared.redis import RedisClient

Args = list[str | int | float | bytes]


def source(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Scripts:
    apply_delivery: AsyncScript
    expire_pending: AsyncScript
    set_state: AsyncScript
    start_test: AsyncScript
    expire_test: AsyncScript
    count_transition: AsyncScript
    reject_bucket: AsyncScript
    outbox_claim: AsyncScript
    outbox_done: AsyncScript
    mark_silent: AsyncScript
    learn_secret: AsyncScript
    rate_window: AsyncScript
    reseal: AsyncScript
    test_hop: AsyncScript
    hold_request: AsyncScript

    @classmethod
    def register(cls, client: RedisClient) -> Scripts:
        return cls(**{f.name: client.register_script(source(f.name)) for f in fields(cls)})


async def run(script: AsyncScript, keys: list[str], args: Args) -> Any:
    """Run one script (EVALSHA, loading it first if Redis does not know it). The reply is the script's
    own: each caller knows its shape (see the script's header)."""
    return await script(keys=keys, args=args)
