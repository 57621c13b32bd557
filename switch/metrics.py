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
    # Interbank network links (switch/adapters/network_link.py); `endpoint` is host:port of a connection.
    network_link_up: Gauge
    network_reconnects_total: Counter
    network_requests_total: Counter
    network_responses_total: Counter
    network_timeouts_total: Counter
    network_unmatched_total: Counter
    network_unavailable_total: Counter
    network_pending: Gauge
    network_latency: Histogram
    network_inbound_total: Counter
    network_frame_errors_total: Counter
    # Zone PIN key exchanges by outcome (switch/pipeline/network_keys.py: installed, kcv_mismatch, ...).
    network_key_exchanges_total: Counter

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
            network_link_up=Gauge(
                "switch_network_link_up",
                "1 while the connection to this endpoint is signed on",
                ["network", "endpoint"],
                registry=registry,
            ),
            network_reconnects_total=Counter(
                "switch_network_reconnects",
                "Times the link waited out a backoff and tried its endpoints again",
                ["network"],
                registry=registry,
            ),
            network_requests_total=Counter(
                "switch_network_requests",
                "Requests sent to the network",
                ["network", "mti"],
                registry=registry,
            ),
            network_responses_total=Counter(
                "switch_network_responses",
                "Matched responses by class: approved, declined, unknown_code, no_code, rejected",
                ["network", "result"],
                registry=registry,
            ),
            network_timeouts_total=Counter(
                "switch_network_timeouts",
                "Requests without a matched response: deadline, connection_lost or send_failed",
                ["network", "reason"],
                registry=registry,
            ),
            network_unmatched_total=Counter(
                "switch_network_unmatched_responses",
                "Responses that matched nothing pending: late, duplicate or unknown",
                ["network", "reason"],
                registry=registry,
            ),
            network_unavailable_total=Counter(
                "switch_network_unavailable",
                "Requests refused at once: down, draining, pending_full or key_in_use",
                ["network", "reason"],
                registry=registry,
            ),
            network_pending=Gauge(
                "switch_network_pending_requests",
                "Requests sent and awaiting a response",
                ["network"],
                registry=registry,
            ),
            network_latency=Histogram(
                "switch_network_latency_seconds",
                "Round trip from sending a request to its matched response",
                ["network"],
                buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
                registry=registry,
            ),
            network_inbound_total=Counter(
                "switch_network_inbound_requests",
                "Requests from the network (issuer side and network management), by MTI",
                ["network", "mti"],
                registry=registry,
            ),
            network_frame_errors_total=Counter(
                "switch_network_frame_errors",
                "Frames from the network that could not be read (framing, decode) or served (internal)",
                ["network", "reason"],
                registry=registry,
            ),
            network_key_exchanges_total=Counter(
                "switch_network_key_exchanges",
                "Zone PIN key exchanges by outcome: installed, unchanged, kcv_mismatch, refused, ...",
                ["network", "outcome"],
                registry=registry,
            ),
        )
