"""The growth series drawn with matplotlib (no display needed), one PNG each, under ``docs/perf/``."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.figure import Figure  # noqa: E402

from bench.series import Series  # noqa: E402


def _caption(fig: Figure, caption: str) -> None:
    if caption:
        fig.text(0.01, 0.01, caption, fontsize="x-small", color="grey")


def _series(series: Series, path: str, caption: str) -> None:
    fig, left = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    left.plot(series.x, series.throughput, "o-", color="tab:blue", label="whole path webhooks/s")
    left.set_xscale("log")
    left.set_xlabel(series.x_label)
    left.set_ylabel("webhooks/s (saturation)", color="tab:blue")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(series.x, series.p99_ms, "s--", color="tab:red", label="p99")
    right.set_ylabel(series.p99_label + ", half load", color="tab:red", fontsize="small")
    right.set_ylim(bottom=0)
    left.set_title(f"hookstatus: throughput and p99 against {series.name}")
    left.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    _caption(fig, caption)
    fig.savefig(path)
    plt.close(fig)


def _memory(xs: list[float], idle: list[float], full: float, path: str, caption: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(xs, idle, "o-", label="idle connection (measured)")
    if full == full and full > 0:
        ax.axhline(full, color="tab:orange", linestyle="--",
                   label=f"with a full deliveries list, dedupe keys included ({full:,.0f} B, measured)")
    ax.set_xscale("log")
    ax.set_xlabel("connections in Redis")
    ax.set_ylabel("Redis bytes per connection")
    ax.set_ylim(bottom=0)
    ax.set_title("hookstatus: Redis memory per connection")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _caption(fig, caption)
    fig.savefig(path)
    plt.close(fig)


def draw(series: list[tuple[str, Series]], memory_x: list[float], memory_idle: list[float], full_list: float,
         folder: str, caption: str = "") -> list[str]:
    """Write a plot per series (``<name>.png``) and the memory plot into ``folder``; their paths.
    ``full_list``: Redis bytes per connection with a full deliveries list (NaN or 0: not drawn);
    ``caption``: which run drew them, in small print."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, one in series:
        if one.x:
            paths.append(os.path.join(folder, f"{name}.png"))
            _series(one, paths[-1], caption)
    if memory_x:
        paths.append(os.path.join(folder, "memory.png"))
        _memory(memory_x, memory_idle, full_list, paths[-1], caption)
    return paths
