"""Rebuild the per-state connection counters behind ``hookstatus_connections`` from the connections
themselves (see docs/OPERATIONS.md, "The connection counts look wrong"). Uses REDIS_URL and
REDIS_PREFIX like the services; works on a single Redis and on a Redis Cluster.

    .venv/bin/python scripts/recount_states.py
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.config import CommonSettings  # noqa: E402
from shared.redis import redis_client  # noqa: E402
from shared.store import Store  # noqa: E402


async def main() -> None:
    settings = CommonSettings.from_env()
    async with redis_client(settings.redis_url) as client:
        counts = await Store(client, settings.redis_prefix).recount_states()
    print(" ".join(f"{state}={n}" for state, n in counts.items()))


if __name__ == "__main__":
    asyncio.run(main())
