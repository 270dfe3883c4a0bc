"""Re-encrypt every connection's secrets (and every notification endpoint's) under the newest key of
``SECRETS_KEYS`` (the first one).

A key rotation: prepend the new key to ``SECRETS_KEYS`` everywhere (``k2:<new>,k1:<old>``) and deploy
every service (they now encrypt with the new key and still decrypt with the old one), then run this,
then drop the old key. Uses REDIS_URL, REDIS_PREFIX and SECRETS_KEYS like the services; safe to run
while they serve (each rewrite is a compare-and-set) and to run again.

    .venv/bin/python -m scripts.rotate_secret_keys
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.config import CommonSettings  # noqa: E402
from shared.crypto import SecretUnreadable  # noqa: E402
from shared.errors import StoreUnavailable  # noqa: E402
from shared.notify_store import NotifyStore  # noqa: E402
from shared.redis import redis_client  # noqa: E402
from shared.store import Store  # noqa: E402


async def main() -> int:
    settings = CommonSettings.from_env()
    sealer = settings.sealer()
    try:
        async with redis_client(settings.redis_url) as client:
            seen, rewritten = await Store(client, settings.redis_prefix, sealer).reseal_all()
            endpoints, endpoints_rewritten = await NotifyStore(client, settings.redis_prefix, sealer).reseal_endpoints()
    except SecretUnreadable as exc:
        print(f"stopped: {exc}; add the key it was sealed with to SECRETS_KEYS and run again", file=sys.stderr)
        return 1
    except StoreUnavailable:
        print("Redis is not reachable at REDIS_URL", file=sys.stderr)
        return 1
    print(f"re-encrypted {rewritten} of {seen} connections and {endpoints_rewritten} of {endpoints} notification "
          f"endpoints under key {sealer.current_kid}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
