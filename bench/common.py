"""What the benchmarks share: latency summaries."""

from __future__ import annotations

import statistics


def summary(name: str, latencies: list[float]) -> tuple[float, float]:
    """Print and return p50/p99 of latencies in milliseconds."""
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name:<32} n={len(ordered):<5} p50={p50:7.1f} ms  p99={p99:7.1f} ms")
    return p50, p99
