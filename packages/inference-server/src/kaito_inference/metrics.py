"""Prometheus metrics of the server, kept in a registry owned by one app instance.

Why this exists: dashboards and the autoscaler need requests, latency, time to first token,
tokens in and out, and running/waiting requests. A per-app ``CollectorRegistry`` keeps tests that
build several apps in one process independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class ServerMetrics:
    """All collectors; created once per app."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "kaito_inference_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "kaito_inference_request_duration_seconds",
            "Request latency, until the last byte of a stream.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "kaito_inference_time_to_first_token_seconds",
            "Time from request start to the first generated token.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "kaito_inference_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r
        )
        self.generation_tokens = Counter(
            "kaito_inference_generation_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.running = Gauge(
            "kaito_inference_requests_running", "Requests in the backend now.", registry=r
        )
        self.waiting = Gauge(
            "kaito_inference_requests_waiting", "Requests waiting for a slot.", registry=r
        )
        self.rejected = Counter(
            "kaito_inference_rate_limited", "Requests rejected with 429.", registry=r
        )
        self.adapters = Gauge(
            "kaito_inference_adapters_loaded", "LoRA adapters being served.", registry=r
        )
