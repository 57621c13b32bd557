"""Prometheus metrics of the switch: one registry, created once, exported by the admin endpoint.

Names follow Prometheus conventions (`switch_` prefix, units in names, `_total` for counters). Labels
never carry card data: only listener names, result codes, routes and similar low-cardinality values.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

__all__ = ["Metrics"]


@dataclass
class Metrics:
    registry: CollectorRegistry
    build_info: Info
    up: Gauge
    listener_up: Gauge
    connections_open: Gauge
    connections_total: Counter
    connections_rejected_total: Counter
    frames_total: Counter
    frame_errors_total: Counter
    inflight: Gauge
    transactions_total: Counter
    transaction_latency: Histogram
    system_errors_total: Counter

    @classmethod
    def create(cls, *, version: str, node_name: str) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        build_info = Info("switch_build", "Version and node of this switchd", registry=registry)
        build_info.info({"version": version, "node": node_name})
        return cls(
            registry=registry,
            build_info=build_info,
            up=Gauge("switch_up", "1 while switchd serves, 0 while it drains", registry=registry),
            listener_up=Gauge(
                "switch_listener_up",
                "1 while the listener accepts connections",
                ["listener"],
                registry=registry,
            ),
            connections_open=Gauge(
                "switch_connections_open", "Connections currently open", ["listener"], registry=registry
            ),
            connections_total=Counter(
                "switch_connections", "Connections accepted since start", ["listener"], registry=registry
            ),
            connections_rejected_total=Counter(
                "switch_connections_rejected",
                "Connections refused (limit reached or not allowed)",
                ["listener", "reason"],
                registry=registry,
            ),
            frames_total=Counter(
                "switch_frames", "Frames read or written", ["listener", "direction"], registry=registry
            ),
            frame_errors_total=Counter(
                "switch_frame_errors",
                "Frames that could not be read or decoded",
                ["listener", "reason"],
                registry=registry,
            ),
            inflight=Gauge(
                "switch_inflight_requests", "Requests being processed", ["listener"], registry=registry
            ),
            transactions_total=Counter(
                "switch_transactions",
                "Requests answered, by transaction type, result and response code",
                ["type", "result", "code"],
                registry=registry,
            ),
            transaction_latency=Histogram(
                "switch_transaction_latency_seconds",
                "Time from decoded request to response",
                ["type"],
                buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
                registry=registry,
            ),
            system_errors_total=Counter(
                "switch_system_errors",
                "Requests answered 96 because a dependency failed",
                ["dependency"],
                registry=registry,
            ),
        )
