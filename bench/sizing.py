"""What a deployment needs for a given rate, from the costs measured here (pure arithmetic)."""

from __future__ import annotations

import math

UTILISATION = 0.7  # plan processes at most this busy, for bursts
REDIS_UTILISATION = 0.5  # a Redis shard's one main thread: keep it half free, or latency climbs


def size_for(rate: float, us: dict[str, float], queue_rate: float, bytes_per_connection: float,
             connections: int, bytes_per_delivery_kept: float, kept_s: int) -> dict[str, str]:
    """For ``rate`` webhooks/s: receivers and verifiers (one core each), RabbitMQ cores and quorum queues
    (``queue_rate``: what one quorum queue carried here), Redis Cluster shards by CPU and by memory
    (``connections`` of ``bytes_per_connection``, plus ``bytes_per_delivery_kept`` for each delivery of
    the last ``kept_s`` seconds: the dedupe keys). ``us``: CPU µs per webhook by process group."""

    def cores(group: str, util: float = UTILISATION) -> float:
        return rate * us.get(group, 0.0) / 1e6 / util

    memory_gib = (connections * bytes_per_connection + rate * kept_s * bytes_per_delivery_kept) / 2**30
    queues = math.ceil(rate / (UTILISATION * queue_rate)) if queue_rate > 0 else 0
    return {
        "receivers": f"{math.ceil(cores('receiver'))} processes ({us.get('receiver', 0):.0f} µs/webhook)",
        "verifiers": f"{math.ceil(cores('verifier'))} processes ({us.get('verifier', 0):.0f} µs/webhook)",
        "RabbitMQ": f"{cores('RabbitMQ'):.1f} cores ({us.get('RabbitMQ', 0):.0f} µs/webhook), {queues} quorum "
                    f"queues (one carried {queue_rate:,.0f}/s here)",
        "Redis": f"{max(1, math.ceil(cores('Redis', REDIS_UTILISATION)))} shards by CPU "
                 f"({us.get('Redis', 0):.0f} µs/webhook); {memory_gib:,.1f} GiB: {connections:,} connections x "
                 f"{bytes_per_connection:,.0f} B + {kept_s // 3600} h of deliveries x {bytes_per_delivery_kept:,.0f} B "
                 "of dedupe keys",
    }
