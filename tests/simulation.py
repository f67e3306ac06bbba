"""A deterministic network simulation for the reconnecting client core.

One ``ReconnectingClient`` talks to ``ServerHub`` sessions through an in-memory network
that refuses, black-holes, resets and half-opens connections and makes the server
restart or reject upgrades, on a schedule drawn from one seed.  Time is simulated: the
loop jumps from one event (a delivery, a fault, a core deadline) to the next, so a
session of minutes runs in milliseconds.

Run ``python -m tests.simulation --sessions 10000`` for the large run; the test suite
runs a thousand seeds.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zenws_core import (
    ClientConfig,
    Closed,
    CloseTransport,
    GaveUp,
    HeartbeatConfig,
    MessageDropped,
    MessageReceived,
    MessagesPossiblyLost,
    OpenTransport,
    OverflowPolicy,
    QueueConfig,
    QueueFull,
    ReconnectConfig,
    ReconnectingClient,
    ReconnectScheduled,
    Reject,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    ServerConfig,
    ServerHub,
    ServerSession,
    decode_envelope,
    encode_envelope,
)
from zenws_core._router import Envelope


@dataclass
class Link:
    """One simulated TCP connection between the client and a server session."""

    generation: int
    session: ServerSession
    latency: float
    alive: bool = True
    #: Black hole: bytes in either direction vanish and nothing signals it.
    silent: bool = False


@dataclass
class Outcome:
    seed: int
    sent: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    received: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    possibly_lost: set[str] = field(default_factory=set)
    attempts: list[float] = field(default_factory=list)
    scheduled: list[tuple[float, float, int]] = field(default_factory=list)
    gave_up: list[GaveUp] = field(default_factory=list)
    requests: dict[str, list[str]] = field(default_factory=dict)
    max_queue: int = 0
    max_queue_bytes: int = 0
    final_queue: int = 0
    healed_at: float = 0.0
    end: float = 0.0


class Simulation:
    """Drive one client session through a faulty network, deterministically from ``seed``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.now = 0.0
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.counter = itertools.count()
        self.fault_until = rng.uniform(3.0, 20.0)
        self.queue_config = QueueConfig(
            max_messages=rng.choice([4, 16, 1000]),
            max_bytes=rng.choice([64, 10_000, 1 << 20]),
            overflow=rng.choice(list(OverflowPolicy)),
        )
        self.reconnect_config = ReconnectConfig(
            initial_delay=rng.choice([0.05, 0.2, 1.0]),
            multiplier=2.0,
            max_delay=rng.choice([1.0, 5.0]),
            stable_after=2.0,
        )
        self.rejecting = False
        hub_config = ServerConfig(authenticate=self._authenticate)
        self.hub = ServerHub(hub_config, now=0.0)
        config = ClientConfig(
            url="ws://sim.test/feed",
            queue=self.queue_config,
            reconnect=self.reconnect_config,
            heartbeat=HeartbeatConfig(interval=1.0, timeout=1.0, late_tolerance=10.0),
            connect_timeout=2.0,
            request_timeout=rng.choice([0.5, 5.0, 60.0]),
        )
        self.client: ReconnectingClient[object] = ReconnectingClient(
            config, rng=random.Random(seed + 1), mask_source=random.Random(seed + 2).randbytes
        )
        self.link: Link | None = None
        self.generation = 0
        self.out = Outcome(seed=seed, healed_at=self.fault_until)
        self.next_message = 0

    # ------------------------------------------------------------------ scheduling

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.heap, (when, next(self.counter), action))

    @property
    def faulty(self) -> bool:
        return self.now < self.fault_until

    def _authenticate(self, request: RequestReceived) -> Reject | None:
        if self.rejecting and self.faulty:
            return Reject(503, (("retry-after", "0.5"),), b"busy")
        return None

    # ------------------------------------------------------------------ the client side

    def pump_client(self) -> None:
        client = self.client
        for action in client.actions():
            if isinstance(action, OpenTransport):
                self.open_transport(action)
            elif isinstance(action, CloseTransport):
                self.close_link_from_client()
        data = client.data_to_send()
        link = self.link
        if data and link is not None and link.alive and not link.silent:
            self.at(self.now + link.latency, lambda: self.deliver_to_server(link, data))
        for event in client.events():
            self.observe(event)
        self.out.max_queue = max(self.out.max_queue, len(client.queue))
        self.out.max_queue_bytes = max(self.out.max_queue_bytes, client.queue.bytes)

    def observe(self, event: object) -> None:
        out = self.out
        if isinstance(event, MessageDropped):
            if event.request_id is None:
                out.dropped.add(str(event.payload))
            else:
                out.requests.setdefault(event.request_id, []).append("dropped")
        elif isinstance(event, MessagesPossiblyLost):
            for message in event.messages:
                out.possibly_lost.add(str(message.payload))
        elif isinstance(event, ReconnectScheduled):
            out.scheduled.append((self.now, event.delay, event.attempt))
        elif isinstance(event, GaveUp):
            out.gave_up.append(event)
        elif isinstance(event, ResponseReceived):
            out.requests.setdefault(event.request_id, []).append("response")
        elif isinstance(event, RequestTimedOut):
            out.requests.setdefault(event.request_id, []).append("timeout")

    def open_transport(self, action: OpenTransport) -> None:
        self.out.attempts.append(self.now)
        roll = self.rng.random() if self.faulty else 1.0
        latency = self.rng.uniform(0.001, 0.05)
        generation = action.generation
        if roll < 0.15:
            self.at(
                self.now + latency,
                lambda: self.client_call(
                    lambda: self.client.connection_failed("refused", self.now, refused=True),
                    generation,
                ),
            )
        elif roll < 0.22:
            pass  # black hole: the core's own connect deadline must fire
        else:
            self.rejecting = self.faulty and self.rng.random() < 0.1
            session = self.hub.session(self.now)
            link = Link(generation, session, latency)
            self.link = link
            self.at(
                self.now + latency,
                lambda: self.client_call(lambda: self.client.connection_made(self.now), generation),
            )

    def client_call(self, call: Callable[[], None], generation: int) -> None:
        """Transport news reaches the client only while that transport is current."""
        if generation != self.client_generation():
            return
        call()
        self.pump_client()

    def client_generation(self) -> int:
        # The core numbers transports; the adapter only reports news of the current one.
        return self.client._generation

    def close_link_from_client(self) -> None:
        link = self.link
        if link is None:
            return
        self.link = None
        if link.alive:
            link.alive = False
            if not link.silent:
                self.at(self.now + link.latency, lambda: self.server_eof(link))

    # ------------------------------------------------------------------ the server side

    def deliver_to_server(self, link: Link, data: bytes) -> None:
        if not link.alive or link.silent:
            return
        session = link.session
        session.receive_data(data, self.now)
        self.pump_server(link)

    def server_eof(self, link: Link) -> None:
        link.session.receive_eof(self.now)
        self.pump_server(link, closing=True)

    def pump_server(self, link: Link, *, closing: bool = False) -> None:
        session = link.session
        for event in session.events():
            if isinstance(event, MessageReceived):
                text = str(event.data)
                envelope = decode_envelope(text)
                if isinstance(envelope, Envelope) and envelope.id is not None:
                    if session.is_open:
                        session.send_text(encode_envelope(Envelope("ack", None, envelope.id)))
                else:
                    self.out.received.append(text)
            elif isinstance(event, Closed):
                pass
        data = session.data_to_send()
        if data and link.alive and not link.silent:
            self.at(self.now + link.latency, lambda: self.deliver_to_client(link, data))
        if session.should_close_transport and link.alive and not closing:
            link.alive = False
            if not link.silent:
                self.at(self.now + link.latency, lambda: self.client_eof(link))

    def deliver_to_client(self, link: Link, data: bytes) -> None:
        if link.silent or link.generation != self.client_generation():
            return
        self.client.receive_data(data, self.now)
        self.pump_client()

    def client_eof(self, link: Link) -> None:
        if link.silent or link.generation != self.client_generation():
            return
        self.client.receive_eof(self.now)
        self.pump_client()

    # ------------------------------------------------------------------ faults and traffic

    def fault(self) -> None:
        if not self.faulty:
            return
        link = self.link
        kind = self.rng.random()
        if link is not None and link.alive and not link.silent:
            if kind < 0.4:  # reset: both ends learn at once, bytes in flight are lost
                link.alive = False
                self.link = None
                self.client_call(
                    lambda: self.client.connection_lost("reset", self.now), link.generation
                )
                link.session.receive_eof(self.now)
            elif kind < 0.6:  # half-open: silence in both directions
                link.silent = True
            elif kind < 0.8 and link.session.is_open:  # server restart
                link.session.close(self.rng.choice([1001, 1012, 1013]), "restart", now=self.now)
                self.pump_server(link)
        self.at(self.now + self.rng.expovariate(1 / 3.0), self.fault)

    def app_send(self) -> None:
        if self.now > self.fault_until + 5.0:
            return
        if self.rng.random() < 0.1:
            try:
                request_id = self.client.request("op", {"n": self.next_message}, now=self.now)
            except QueueFull:
                pass
            else:
                self.out.requests.setdefault(request_id, [])
        else:
            text = f"m{self.next_message}"
            self.next_message += 1
            self.out.sent.append(text)
            try:
                self.client.send_text(text, now=self.now)
            except QueueFull:
                self.out.refused.add(text)
        self.pump_client()
        self.at(self.now + self.rng.expovariate(1 / 0.7), self.app_send)

    def timer(self) -> None:
        deadline = self.client.next_deadline()
        if deadline is not None and deadline <= self.now:
            self.client.handle_timer(self.now)
            self.pump_client()
        link = self.link
        if link is not None and link.alive:
            server_deadline = link.session.next_deadline()
            if server_deadline is not None and server_deadline <= self.now:
                link.session.handle_timer(self.now)
                self.pump_server(link)

    def next_timer(self) -> float | None:
        candidates = [self.client.next_deadline()]
        if self.link is not None and self.link.alive:
            candidates.append(self.link.session.next_deadline())
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    # ------------------------------------------------------------------ run

    def settled(self) -> bool:
        client = self.client
        return (
            self.now > self.fault_until + 5.0
            and len(client.queue) == 0
            and client.state.value == "open"
            and not len(client.requests)
        )

    def run(self, horizon: float = 600.0) -> Outcome:
        self.client.start(self.now)
        self.pump_client()
        self.at(self.rng.uniform(0.5, 3.0), self.fault)
        self.at(0.0, self.app_send)
        while self.now < horizon:
            timer = self.next_timer()
            nxt = self.heap[0][0] if self.heap else None
            if timer is not None and (nxt is None or timer <= nxt):
                self.now = max(self.now, timer)
                self.timer()
            elif nxt is not None:
                when, _, action = heapq.heappop(self.heap)
                self.now = max(self.now, when)
                action()
            else:
                break
            if self.settled() and not self.heap_has_traffic():
                break
        self.out.final_queue = len(self.client.queue)
        self.out.end = self.now
        return self.out

    def heap_has_traffic(self) -> bool:
        return any(getattr(action, "__name__", "") == "<lambda>" for _, _, action in self.heap)


def check(out: Outcome, sim: Simulation) -> None:
    """The properties every session must hold (raises AssertionError with the seed)."""
    tag = f"seed {out.seed}"
    sent_order = {text: i for i, text in enumerate(out.sent)}
    # at most once, in order
    assert len(out.received) == len(set(out.received)), f"{tag}: duplicate delivery"
    positions = [sent_order[text] for text in out.received]
    assert positions == sorted(positions), f"{tag}: out of order {out.received}"
    # nothing silently lost
    missing = set(out.sent) - set(out.received)
    unexplained = missing - out.dropped - out.possibly_lost - out.refused
    assert not unexplained, f"{tag}: silently lost {sorted(unexplained)}"
    # bounds
    qc = sim.queue_config
    assert out.max_queue <= qc.max_messages, f"{tag}: queue over count bound"
    assert out.max_queue_bytes <= qc.max_bytes, f"{tag}: queue over byte bound"
    # after healing, everything drains and the client is open
    assert out.final_queue == 0, f"{tag}: {out.final_queue} messages still queued"
    assert sim.client.state.value == "open", f"{tag}: ended {sim.client.state}"
    # backoff: every reconnect happened exactly when scheduled, within the policy's cap
    rc = sim.reconnect_config
    for when, delay, attempt in out.scheduled:
        assert delay >= 0.0, tag
        assert delay <= max(rc.delay_cap(attempt), 0.5) + 1e-9, f"{tag}: delay {delay} > cap"
        assert any(abs(t - (when + delay)) < 1e-9 for t in out.attempts), (
            f"{tag}: no attempt at {when + delay}"
        )
    # never gives up on retryable faults only
    assert not out.gave_up, f"{tag}: gave up: {out.gave_up}"
    # each request ends exactly once (a reply or a timeout; a drop comes with its timeout)
    for request_id, outcomes in out.requests.items():
        finals = [o for o in outcomes if o in ("response", "timeout")]
        if outcomes == ["dropped"]:
            continue  # dropped before it was sent (overflow): MessageDropped ended it
        assert len(finals) == 1, f"{tag}: request {request_id} outcomes {outcomes}"


def run_seed(seed: int) -> Outcome:
    sim = Simulation(seed)
    out = sim.run()
    check(out, sim)
    return out


def _run_block(seeds: range) -> dict[str, int]:
    totals = {"sent": 0, "received": 0, "dropped": 0, "possibly_lost": 0, "attempts": 0}
    for seed in seeds:
        out = run_seed(seed)
        totals["sent"] += len(out.sent)
        totals["received"] += len(out.received)
        totals["dropped"] += len(out.dropped)
        totals["possibly_lost"] += len(out.possibly_lost)
        totals["attempts"] += len(out.attempts)
    return totals


def main(argv: list[str] | None = None) -> int:
    import multiprocessing
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    first, count, jobs = args.first_seed, args.sessions, max(1, args.jobs)
    step = -(-count // jobs)
    blocks = [range(s, min(s + step, first + count)) for s in range(first, first + count, step)]
    with multiprocessing.Pool(jobs) as pool:
        results = pool.map(_run_block, blocks)
    totals = {key: sum(r[key] for r in results) for key in results[0]}
    elapsed = time.perf_counter() - started
    print(
        f"{count} sessions in {elapsed:.1f}s on {jobs} processes; "
        f"all properties held; totals {totals}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
