"""Prometheus metrics of a node, read from its snapshot when scraped (``llmos node --metrics``).

Nothing is counted on the hot paths for this: :class:`SnapshotCollector` turns one
:func:`~llmos.cli.node_snapshot` (the kernel's, the transport's and the model actors' own
statistics) into metric families at each scrape. Needs ``prometheus-client``
(``pip install 'llmos[metrics]'``).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from llmos.actors import ASK_LATENCY_BOUNDS, LlmosError
from llmos.transport import Node

from ._observe import node_snapshot

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["MetricsServer", "SnapshotCollector", "parse_host_port", "serve_metrics"]

Snapshot = dict[str, Any]
STATES = ("running", "failed", "restarting", "stopping", "stopped")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _prometheus() -> Any:
    try:
        import prometheus_client.core as core
    except ImportError as exc:
        raise LlmosError("metrics need prometheus-client: pip install 'llmos[metrics]'") from exc
    return core


class SnapshotCollector:
    """A Prometheus collector reading a node snapshot at each scrape.

    Args:
        snapshot: returns the snapshot to report (default: this process's, without a node).
    """

    def __init__(self, snapshot: Callable[[], Snapshot] | None = None) -> None:
        self.read = snapshot if snapshot is not None else node_snapshot

    def collect(self) -> Iterator[Metric]:
        """The metric families of one snapshot (called by prometheus-client per scrape)."""
        core = _prometheus()
        gauge, counter = core.GaugeMetricFamily, core.CounterMetricFamily
        snap = self.read()
        actors = snap["actors"]

        by_state = gauge("llmos_actors", "Actors by state", labels=["state"])
        states = {state: 0 for state in STATES}
        for row in actors:
            states[row["state"]] = states.get(row["state"], 0) + 1
        for state, count in states.items():
            by_state.add_metric([state], count)
        yield by_state

        per_actor: list[tuple[str, str, Any, str]] = [
            ("llmos_actor_mailbox_depth", "Messages queued for an actor", gauge, "mailbox"),
            ("llmos_actor_in_flight", "1 while an actor handles a message", gauge, "in_flight"),
            ("llmos_actor_load", "Mailbox depth + in flight + deferred asks", gauge, "load"),
            ("llmos_actor_processed", "Messages an actor handled", counter, "processed"),
            ("llmos_actor_failures", "Messages whose handler raised", counter, "failed"),
            ("llmos_actor_restarts", "Times a fresh instance replaced a failed one", counter,
             "restarts"),
            ("llmos_actor_busy_seconds", "Time spent inside handlers", counter, "busy"),
        ]  # fmt: skip
        labels = ["actor", "class", "parent"]
        for name, doc, family, key in per_actor:
            metric = family(name, doc, labels=labels)
            for row in actors:
                metric.add_metric([row["name"], row["class"], row["parent"]], row[key])
            yield metric

        latency = core.SummaryMetricFamily(
            "llmos_actor_latency_seconds",
            "Seconds from send to handled, per actor (sum and count of all messages)",
            labels=["actor"],
        )
        for row in actors:
            latency.add_metric(
                [row["name"]], row["processed"], row["mean_latency"] * row["processed"]
            )
        yield latency

        asks = core.HistogramMetricFamily(
            "llmos_actor_ask_latency_seconds",
            "Asks by seconds from send to handled, per actor (actors that were asked)",
            labels=["actor"],
        )
        for row in actors:
            counts = row.get("ask_latency") or []
            if sum(counts):
                asks.add_metric([row["name"]], _cumulative(counts), row["ask_seconds"])
        yield asks

        k = snap["kernel"]
        for name, doc, key in (
            ("llmos_dead_letters", "Messages recorded as dead letters", "dead_letters"),
            ("llmos_ask_failures", "Asks whose handler raised", "ask_failures"),
            ("llmos_gave_up", "Children stopped for good after too many restarts", "gave_up"),
        ):
            yield counter(name, doc, value=k[key])

        yield from self._pools(core, snap["pools"])
        if snap["transport"] is not None:
            yield from self._transport(core, snap["transport"])
        yield from self._models(core, snap["models"])
        yield from self._tokens(core, snap["tokens"])

    def _pools(self, core: Any, pools: list[Snapshot]) -> Iterator[Metric]:
        size = core.GaugeMetricFamily("llmos_pool_size", "Members of a pool", labels=["pool"])
        depth = core.GaugeMetricFamily(
            "llmos_pool_mailbox_depth", "Messages queued over a pool's members", labels=["pool"]
        )
        util = core.GaugeMetricFamily(
            "llmos_pool_utilisation", "Busy time / available time of a pool", labels=["pool"]
        )
        for pool in pools:
            size.add_metric([pool["name"]], pool["size"])
            depth.add_metric([pool["name"]], pool["mailbox"])
            if pool["utilisation"] is not None:
                util.add_metric([pool["name"]], pool["utilisation"])
        yield from (size, depth, util)

    def _transport(self, core: Any, t: Snapshot) -> Iterator[Metric]:
        peers = core.GaugeMetricFamily("llmos_peers", "Peer nodes by state", labels=["state"])
        peers.add_metric(["up"], len(t["peers_up"]))
        peers.add_metric(["down"], len(t["peers_down"]))
        yield peers
        clients = core.GaugeMetricFamily(
            "llmos_clients",
            "Peers connected to this node, by whether they were heard within the heartbeat",
            labels=["state"],
        )
        clients.add_metric(["up"], t.get("clients_up", 0))
        clients.add_metric(["silent"], t.get("clients_silent", 0))
        yield clients
        frames = core.CounterMetricFamily(
            "llmos_transport_frames", "Frames received and sent", labels=["direction"]
        )
        frames.add_metric(["in"], t["frames_in"])
        frames.add_metric(["out"], t["frames_out"])
        yield frames
        if "bytes_in" in t:
            moved = core.CounterMetricFamily(
                "llmos_transport_bytes", "Bytes of frames received and sent", labels=["direction"]
            )
            moved.add_metric(["in"], t["bytes_in"])
            moved.add_metric(["out"], t["bytes_out"])
            yield moved
        for key, doc in (
            ("bad_frames", "Frames dropped as garbage, truncated, too large or unknown"),
            ("bad_items", "Items rejected inside valid frames"),
            ("refusals", "Requests refused because the peer may not make them"),
            ("quota_refusals", "Requests refused over a peer's quota"),
            ("expired_requests", "Requests not started because their asker had given up"),
            ("undelivered_tells", "Tells that could not be delivered"),
        ):
            yield core.CounterMetricFamily(f"llmos_transport_{key}", doc, value=t[key])
        yield core.GaugeMetricFamily(
            "llmos_transport_pending_requests",
            "Requests awaiting answers",
            value=t["pending_requests"],
        )

    def _models(self, core: Any, models: list[Snapshot]) -> Iterator[Metric]:
        labels = ["actor", "model"]
        families = {
            key: core.CounterMetricFamily(f"llmos_model_{key}", doc, labels=labels)
            for key, doc in (
                ("requests", "Generate requests accepted"),
                ("completed", "Requests answered with a Completion"),
                ("refused", "Requests refused (malformed, too long, over budget, expired)"),
                ("tokens_generated", "Completion tokens generated"),
                ("generation_seconds", "Time spent inside batches"),
            )
        }
        queued = core.GaugeMetricFamily("llmos_model_queued", "Requests waiting", labels=labels)
        rate = core.GaugeMetricFamily(
            "llmos_model_tokens_per_second", "Tokens generated per second of generation",
            labels=labels,
        )  # fmt: skip
        sizes = core.HistogramMetricFamily(
            "llmos_model_batch_size", "Batch size each completed request ran in", labels=labels
        )
        wait = core.SummaryMetricFamily(
            "llmos_model_queue_seconds", "Seconds completed requests waited before running",
            labels=labels,
        )  # fmt: skip
        for m in models:
            key = [m["actor"], m["model"]]
            for name, family in families.items():
                family.add_metric(key, m[name])
            queued.add_metric(key, m["queued"])
            rate.add_metric(key, m["tokens_per_second"])
            counts = {int(size): count for size, count in m.get("batch_sizes", {}).items()}
            if counts:
                buckets, running = [], 0
                for bound in BATCH_BUCKETS:
                    running = sum(c for s, c in counts.items() if s <= bound)
                    buckets.append((str(float(bound)), running))
                buckets.append(("+Inf", sum(counts.values())))
                total = float(sum(s * c for s, c in counts.items()))
                sizes.add_metric(key, buckets, total)
            if "queue_seconds" in m:
                wait.add_metric(key, m["completed"], m["queue_seconds"])
        yield from families.values()
        yield from (queued, rate, sizes, wait)

    def _tokens(self, core: Any, ledger: Snapshot) -> Iterator[Metric]:
        for kind, label in (("agents", "agent"), ("dialogues", "dialogue"), ("models", "model")):
            singular = label
            used = core.CounterMetricFamily(
                f"llmos_{singular}_tokens",
                f"Model tokens in and out per {singular} (the token ledger)",
                labels=[label, "direction"],
            )
            budget = core.GaugeMetricFamily(
                f"llmos_{singular}_token_budget",
                f"Completion-token budget per {singular}",
                labels=[label],
            )
            for name, usage in ledger.get(kind, {}).items():
                used.add_metric([name, "input"], usage["input_tokens"])
                used.add_metric([name, "output"], usage["output_tokens"])
                if usage.get("budget") is not None:
                    budget.add_metric([name], usage["budget"])
            yield used
            if kind == "agents":
                yield budget


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (``ASK_LATENCY_BOUNDS``, then overflow) as Prometheus buckets."""
    buckets, total = [], 0
    for bound, count in zip(ASK_LATENCY_BOUNDS, counts, strict=False):
        total += count
        buckets.append((str(float(bound)), float(total)))
    buckets.append(("+Inf", float(sum(counts))))
    return buckets


def parse_host_port(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair.

    Raises:
        LlmosError: not HOST:PORT, or the port is not 0-65535 (the message names ``flag``).
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise LlmosError(f"{flag} takes HOST:PORT (e.g. 127.0.0.1:9464), got {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsServer:
    """A running metrics endpoint (``GET /metrics``); :meth:`close` stops it.

    Attributes:
        host, port: where it listens (the port chosen when 0 was asked).
        url: ``http://HOST:PORT/metrics``.
    """

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host, self.port = server.server_address[:2]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and close the socket (waits for the serving thread)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


def serve_metrics(
    address: str = "127.0.0.1:9464",
    node: Node | None = None,
    snapshot: Callable[[], Snapshot] | None = None,
    token: str | None = None,
) -> MetricsServer:
    """Serve this process's Prometheus metrics over HTTP at ``address`` (``HOST:PORT``).

    The metrics name every actor, agent and model of the node, so a bind off loopback needs a
    ``token``: every scrape must then send ``Authorization: Bearer TOKEN`` (Prometheus:
    ``authorization: {credentials: TOKEN}`` in the scrape config), or it gets 401.

    Args:
        address: where to listen; port 0 picks a free one (see ``MetricsServer.port``).
        node: the transport node whose peers and counters to include.
        snapshot: what to report instead (default: :func:`node_snapshot` of ``node``).
        token: the bearer token scrapes must send (needed off loopback; optional on it).

    Returns:
        The running server; call ``close()`` to stop it.

    Raises:
        LlmosError: a malformed address, a bind off loopback without a token, or
            prometheus-client is missing.
        OSError: the address cannot be bound.
    """
    host, port = parse_host_port(address, "--metrics")
    if not is_loopback(host) and not token:
        raise LlmosError(
            f"--metrics {address} is not a loopback address: anyone who reaches it would read "
            "the node's actors, agents and token counts; give --metrics-token TOKEN (a long "
            "random string that scrapes send as a bearer token), or bind 127.0.0.1"
        )
    _prometheus()
    from prometheus_client import CollectorRegistry, make_wsgi_app

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot or (lambda: node_snapshot(node))))
    app = make_wsgi_app(registry)
    if token:
        app = _bearer_only(app, token)
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    server = make_server(host, port, app, server_class, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="llmos:metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one a second would fill stderr)."""


def _bearer_only(app: Any, token: str) -> Any:
    """``app`` answering only requests that carry ``Authorization: Bearer TOKEN``."""
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        sent = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1", "replace")
        if not hmac.compare_digest(sent, expected):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"these metrics need Authorization: Bearer TOKEN\n"]
        return app(environ, start_response)

    return guarded
