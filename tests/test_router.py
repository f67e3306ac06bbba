"""Tests of zenws_core._router: envelopes, routing tables and request tracking."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zenws_core._router import (
    Envelope,
    MessageRouter,
    PendingRequest,
    RequestStats,
    RequestTracker,
    Route,
    decode_envelope,
    encode_envelope,
)

# ---------------------------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------------------------


def test_encode_is_compact_and_omits_missing_id() -> None:
    assert encode_envelope(Envelope("ping")) == '{"type":"ping","data":null}'
    assert encode_envelope(Envelope("a", {"x": [1, 2]}, "r1")) == (
        '{"type":"a","data":{"x":[1,2]},"id":"r1"}'
    )


def test_encode_writes_non_ascii_as_utf8() -> None:
    assert encode_envelope(Envelope("msg", "héllo ☃")) == '{"type":"msg","data":"héllo ☃"}'


def test_encode_escapes_lone_surrogates_so_text_is_valid_utf8() -> None:
    text = encode_envelope(Envelope("msg", "é\ud800"))
    text.encode("utf-8")  # must not raise: a text frame needs valid UTF-8
    assert text == '{"type":"msg","data":"\\u00e9\\ud800"}'
    assert decode_envelope(text) == Envelope("msg", "é\ud800")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {(1, 2): "x"}, object(), b"bytes"])
def test_encode_rejects_data_json_cannot_carry(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_envelope(Envelope("t", bad))


def test_encode_rejects_circular_data() -> None:
    data: list[Any] = []
    data.append(data)
    with pytest.raises(ValueError, match="Circular"):
        encode_envelope(Envelope("t", data))


def test_envelope_validates_type_and_id() -> None:
    with pytest.raises(TypeError, match="type must be str"):
        Envelope(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="id must be str"):
        Envelope("t", None, 5)  # type: ignore[arg-type]


def test_envelope_reply_keeps_id() -> None:
    request = Envelope("task.get", {"n": 1}, "req-7")
    assert request.reply("task.result", 42) == Envelope("task.result", 42, "req-7")
    with pytest.raises(ValueError, match="without an id"):
        Envelope("note").reply("x")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"type":"a","data":1}', Envelope("a", 1)),
        (b'{"type":"a","data":[1,"x"],"id":"q"}', Envelope("a", [1, "x"], "q")),
        (bytearray(b'{"type":"a"}'), Envelope("a", None)),
        ('{"type":"a","id":null}', Envelope("a", None, None)),
        ('{"type":"","data":{}}', Envelope("", {})),
        ('  {"type":"a","extra":true}  ', Envelope("a")),
        ('{"type":"a","type":"b"}', Envelope("b")),  # duplicate keys: the last wins
        ('{"type":"\\u00e9"}', Envelope("é")),
    ],
)
def test_decode_valid(message: str | bytes, expected: Envelope) -> None:
    assert decode_envelope(message) == expected


MALFORMED: list[tuple[str | bytes, str]] = [
    ("", "not JSON"),
    ("hello", "not JSON"),
    ("{", "not JSON"),
    ('{"type":"a"} x', "not JSON"),
    ("{'type':'a'}", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"type":"\xc3"}', "not UTF-8"),
    ('{"type":"a","data":NaN}', "not JSON"),
    ('{"type":"a","data":-Infinity}', "not JSON"),
    ('{"type":"a","data":' + "9" * 5000 + "}", "not JSON"),
    ("[" * 100_000, "nested too deeply"),
    ("[1,2]", "JSON array is not an object"),
    ('"text"', "JSON string is not an object"),
    ("3", "JSON number is not an object"),
    ("true", "JSON boolean is not an object"),
    ("null", "JSON null is not an object"),
    ("{}", "missing type"),
    ('{"data":1}', "missing type"),
    ('{"type":null}', "type is a JSON null"),
    ('{"type":3}', "type is a JSON number"),
    ('{"type":["a"]}', "type is a JSON array"),
    ('{"type":{"a":1}}', "type is a JSON object"),
    ('{"type":"a","id":7}', "id is a JSON number"),
    ('{"type":"a","id":false}', "id is a JSON boolean"),
]


@pytest.mark.parametrize(("message", "reason"), MALFORMED)
def test_decode_malformed_returns_reason(message: str | bytes, reason: str) -> None:
    result = decode_envelope(message)
    assert isinstance(result, str)
    assert reason in result


def test_decode_non_str_non_bytes_returns_reason() -> None:
    assert decode_envelope(12) == "unsupported message type int"  # type: ignore[arg-type]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.text())
def test_decode_never_raises_on_text(text: str) -> None:
    result = decode_envelope(text)
    assert isinstance(result, Envelope | str)


@settings(max_examples=300)
@given(st.binary())
def test_decode_never_raises_on_bytes(data: bytes) -> None:
    result = decode_envelope(data)
    assert isinstance(result, Envelope | str)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["type", "data", "id", "x"]), json_values, max_size=4))
def test_decode_never_raises_on_json_objects(obj: dict[str, Any]) -> None:
    result = decode_envelope(json.dumps(obj))
    if isinstance(obj.get("type"), str) and isinstance(obj.get("id"), str | None):
        assert result == Envelope(obj["type"], obj.get("data"), obj.get("id"))
    else:
        assert isinstance(result, str)


@settings(max_examples=200)
@given(st.text(), json_values, st.none() | st.text())
def test_encode_decode_round_trip(kind: str, data: Any, request_id: str | None) -> None:
    envelope = Envelope(kind, data, request_id)
    text = encode_envelope(envelope)
    text.encode("utf-8")
    assert decode_envelope(text) == envelope
    assert decode_envelope(text.encode("utf-8")) == envelope


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------


def msg(kind: str, data: Any = None, request_id: str | None = None) -> str:
    return encode_envelope(Envelope(kind, data, request_id))


def make_router() -> MessageRouter[str]:
    router: MessageRouter[str] = MessageRouter()
    router.on("task.update", "exact-update")
    router.on("task.update", "exact-update-2")
    router.on("task.*", "task-any")
    router.on("task.update.*", "task-update-sub")
    router.on("*", "all")
    router.on("chat.message", "chat")
    router.on_default("default")
    router.on_raw("raw")
    return router


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("task.update", ("exact-update", "exact-update-2", "task-any", "all")),
        ("task.update.progress", ("task-update-sub", "task-any", "all")),
        ("task.create", ("task-any", "all")),
        ("task", ("all",)),
        ("taskforce.x", ("all",)),
        ("chat.message", ("chat", "all")),
        ("other", ("all",)),
        ("", ("all",)),
    ],
)
def test_routing_table(kind: str, expected: tuple[str, ...]) -> None:
    route = make_router().route(msg(kind))
    assert route == Route(Envelope(kind), expected, None)
    assert not route.is_raw


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("task.update", ("exact", "task")),
        ("task.update.x", ("deep", "task")),
        ("task.x", ("task",)),
        ("task", ("default-1", "default-2")),
        ("unknown", ("default-1", "default-2")),
        ("a.b.c.d", ("default-1", "default-2")),
    ],
)
def test_default_only_when_nothing_matched(kind: str, expected: tuple[str, ...]) -> None:
    router: MessageRouter[str] = MessageRouter()
    router.on("task.*", "task")
    router.on("task.update.*", "deep")
    router.on("task.update", "exact")
    router.on_default("default-1")
    router.on_default("default-2")
    router.on_default("default-1")  # duplicate: no-op
    assert router.route(msg(kind)).handlers == expected


def test_malformed_messages_go_to_raw_handlers() -> None:
    router = make_router()
    route = router.route("not json")
    assert route.envelope is None
    assert route.is_raw
    assert route.handlers == ("raw",)
    assert route.raw_reason is not None
    assert "not JSON" in route.raw_reason
    assert router.route(b"\x80").raw_reason == "binary message that is not a JSON object"
    assert router.route(b'{"type": "\x80"}').raw_reason == "not UTF-8"
    assert router.route(b' {"type": "t"}').envelope is not None
    assert router.route('{"type":1}').handlers == ("raw",)


def test_no_handlers_gives_empty_tuple() -> None:
    router: MessageRouter[str] = MessageRouter()
    assert router.route(msg("x")).handlers == ()
    route = router.route("junk")
    assert route.handlers == ()
    assert route.raw_reason is not None


def test_route_carries_the_envelope() -> None:
    route = make_router().route(msg("chat.message", {"text": "hi"}, "q1"))
    assert route.envelope == Envelope("chat.message", {"text": "hi"}, "q1")


def test_handler_appears_once_at_its_first_position() -> None:
    router: MessageRouter[str] = MessageRouter()
    router.on("*", "h")
    router.on("a.*", "other")
    router.on("a.*", "h")
    router.on("a.b", "h")
    assert router.handlers_for("a.b") == ("h", "other")
    assert router.handlers_for("a.c") == ("other", "h")


def test_same_handler_twice_for_a_pattern_is_a_no_op() -> None:
    router: MessageRouter[str] = MessageRouter()
    router.on("a", "h")
    router.on("a", "h")
    assert router.handlers_for("a") == ("h",)
    assert router.off("a", "h") is True
    assert router.handlers_for("a") == ()


def test_registration_order_within_a_pattern() -> None:
    router: MessageRouter[int] = MessageRouter()
    for handler in (3, 1, 2):
        router.on("t.*", handler)
    assert router.handlers_for("t.x") == (3, 1, 2)


def test_off_removes_and_updates_routes() -> None:
    router = make_router()
    assert router.handlers_for("task.update")[0] == "exact-update"  # fills the cache
    assert router.off("task.update", "exact-update") is True
    assert router.off("task.update", "exact-update") is False
    assert router.off("never.registered", "x") is False
    assert router.off("task.*", "all") is False
    assert router.handlers_for("task.update") == ("exact-update-2", "task-any", "all")
    assert router.off("*", "all") is True
    assert router.off("task.*", "task-any") is True
    assert router.off("task.update", "exact-update-2") is True
    assert router.handlers_for("task.update") == ("default",)
    assert router.off_default("default") is True
    assert router.off_default("default") is False
    assert router.handlers_for("task.update") == ()


def test_off_raw() -> None:
    router = make_router()
    router.on_raw("raw")  # duplicate: no-op
    assert router.route("x").handlers == ("raw",)
    assert router.off_raw("raw") is True
    assert router.off_raw("raw") is False
    assert router.route("x").handlers == ()


def test_on_invalidates_cached_routes() -> None:
    router: MessageRouter[str] = MessageRouter()
    router.on_default("d")
    assert router.handlers_for("a.b") == ("d",)
    assert router.handlers_for("a.b") is router.handlers_for("a.b")  # cached
    router.on("a.*", "a")
    assert router.handlers_for("a.b") == ("a",)
    router.on_default("d2")
    assert router.handlers_for("zzz") == ("d", "d2")


def test_route_cache_is_bounded() -> None:
    router: MessageRouter[str] = MessageRouter()
    router.on("*", "all")
    for n in range(5000):
        assert router.handlers_for(f"type.{n}") == ("all",)
    assert len(router._cache) <= 1024


@pytest.mark.parametrize("bad", ["", "a*", "*.a", "a.*.b", "a.**", "**", ".*", "a*.*", "*a"])
def test_invalid_patterns_raise(bad: str) -> None:
    router: MessageRouter[str] = MessageRouter()
    with pytest.raises(ValueError, match="pattern"):
        router.on(bad, "h")
    with pytest.raises(ValueError, match="pattern"):
        router.off(bad, "h")


def test_non_str_pattern_raises() -> None:
    router: MessageRouter[str] = MessageRouter()
    with pytest.raises(TypeError, match="pattern must be str"):
        router.on(3, "h")  # type: ignore[arg-type]


def test_patterns_listing() -> None:
    assert make_router().patterns == (
        "task.update",
        "chat.message",
        "task.update.*",
        "task.*",
        "*",
    )


def test_route_envelope_for_decoded_messages() -> None:
    router = make_router()
    assert router.route_envelope(Envelope("chat.message", 1)) == Route(
        Envelope("chat.message", 1), ("chat", "all")
    )


def test_handlers_can_be_callables() -> None:
    seen: list[str] = []

    def on_task(envelope: Envelope) -> None:
        seen.append(f"task:{envelope.data}")

    def on_any(envelope: Envelope) -> None:
        seen.append(f"any:{envelope.data}")

    router: MessageRouter[Any] = MessageRouter()
    router.on("task.*", on_task)
    router.on("*", on_any)
    route = router.route(msg("task.done", 5))
    assert route.envelope is not None
    for handler in route.handlers:
        handler(route.envelope)
    assert seen == ["task:5", "any:5"]


type_names = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(".".join)
patterns = st.one_of(
    st.just("*"),
    type_names,
    type_names.map(lambda name: name + ".*"),
)


def matches(pattern: str, kind: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return kind.startswith(pattern[:-1])
    return kind == pattern


@settings(max_examples=200)
@given(st.lists(st.tuples(patterns, st.integers(0, 5)), max_size=12), type_names)
def test_routing_matches_a_naive_model(table: list[tuple[str, int]], kind: str) -> None:
    """Each handler appears once, iff one of its patterns matches, exact before prefixes."""
    router: MessageRouter[int] = MessageRouter()
    router.on_default(-1)
    for pattern, handler in table:
        router.on(pattern, handler)
    handlers = router.route(msg(kind)).handlers
    expected = {handler for pattern, handler in table if matches(pattern, kind)}
    if not expected:
        assert handlers == (-1,)
        return
    assert len(handlers) == len(set(handlers))
    assert set(handlers) == expected

    def rank(handler: int) -> int:
        """Best (lowest) rank among the handler's matching patterns: exact 0, prefix by length."""
        ranks = [
            0 if pattern == kind else 1000 - len(pattern)
            for pattern, h in table
            if h == handler and matches(pattern, kind)
        ]
        return min(ranks)

    assert [rank(h) for h in handlers] == sorted(rank(h) for h in handlers)


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def test_request_ids_are_deterministic() -> None:
    first = RequestTracker()
    second = RequestTracker()
    ids_a = [first.new_request("t", None, 1.0, now=0.0).id for _ in range(3)]
    ids_b = [second.new_request("t", None, 1.0, now=5.0).id for _ in range(3)]
    assert ids_a == ids_b == ["req-1", "req-2", "req-3"]
    assert RequestTracker(id_prefix="c").new_request("t", None, 1, now=0).id == "c1"


def test_injected_id_factory() -> None:
    rng = random.Random(1234)
    tracker = RequestTracker(id_factory=lambda: f"{rng.getrandbits(32):08x}")
    ids = [tracker.new_request("t", None, 1.0, now=0.0).id for _ in range(3)]
    rng = random.Random(1234)
    assert ids == [f"{rng.getrandbits(32):08x}" for _ in range(3)]


def test_new_request_fields_and_envelope() -> None:
    tracker = RequestTracker()
    request = tracker.new_request("task.get", {"n": 1}, 2.5, now=10.0)
    assert request == PendingRequest("req-1", "task.get", 12.5, 10.0)
    assert request.data == {"n": 1}
    assert request.envelope() == Envelope("task.get", {"n": 1}, "req-1")
    assert len(tracker) == 1
    assert "req-1" in tracker
    assert tracker.get("req-1") is request
    assert tracker.get("nope") is None


def test_match_by_id_removes_the_request() -> None:
    tracker = RequestTracker()
    one = tracker.new_request("a", 1, 5.0, now=0.0)
    two = tracker.new_request("b", 2, 5.0, now=0.0)
    assert tracker.match(Envelope("whatever", "reply", two.id)) is two
    assert tracker.match(Envelope("again", None, two.id)) is None
    assert tracker.match(Envelope("no-id")) is None
    assert tracker.match(Envelope("unknown", None, "req-99")) is None
    assert len(tracker) == 1
    assert tracker.match(one.envelope().reply("a.reply", 10)) is one
    assert len(tracker) == 0
    assert tracker.next_deadline() is None


def test_timeouts_under_a_fake_clock() -> None:
    tracker = RequestTracker()
    assert tracker.next_deadline() is None
    assert tracker.expire(100.0) == []
    slow = tracker.new_request("slow", None, 10.0, now=0.0)
    fast = tracker.new_request("fast", None, 1.0, now=0.0)
    late = tracker.new_request("late", None, 1.0, now=2.0)
    assert tracker.next_deadline() == 1.0
    assert tracker.expire(0.999) == []
    assert tracker.expire(1.0) == [fast]  # at the deadline counts as expired
    assert tracker.next_deadline() == 3.0
    assert tracker.match(Envelope("r", None, fast.id)) is None  # too late: not a reply
    assert tracker.expire(50.0) == [late, slow]
    assert tracker.next_deadline() is None
    assert len(tracker) == 0
    assert tracker.stats() == RequestStats(sent=3, replied=0, timed_out=3, cancelled=0)


def test_next_deadline_skips_answered_requests() -> None:
    tracker = RequestTracker()
    first = tracker.new_request("a", None, 1.0, now=0.0)
    tracker.new_request("b", None, 3.0, now=0.0)
    assert tracker.match(Envelope("r", None, first.id)) is first
    assert tracker.next_deadline() == 3.0
    assert tracker.expire(2.0) == []


def test_expire_order_ties_keep_creation_order() -> None:
    tracker = RequestTracker()
    made = [tracker.new_request(str(n), None, 1.0, now=0.0) for n in range(5)]
    assert tracker.expire(1.0) == made


def test_cancel_and_cancel_all() -> None:
    tracker = RequestTracker()
    a = tracker.new_request("a", None, 3.0, now=0.0)
    b = tracker.new_request("b", None, 1.0, now=0.0)
    c = tracker.new_request("c", None, 2.0, now=0.0)
    assert tracker.cancel(b.id) is b
    assert tracker.cancel(b.id) is None
    assert tracker.next_deadline() == 2.0
    assert tracker.cancel_all() == [a, c]
    assert len(tracker) == 0
    assert tracker.next_deadline() is None
    assert tracker.expire(10.0) == []
    assert tracker.cancel_all() == []
    assert tracker.stats() == RequestStats(sent=3, replied=0, timed_out=0, cancelled=3)


def test_ids_continue_after_cancel_all() -> None:
    tracker = RequestTracker()
    tracker.new_request("a", None, 1.0, now=0.0)
    tracker.cancel_all()
    assert tracker.new_request("a", None, 1.0, now=0.0).id == "req-2"


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan, math.inf])
def test_bad_timeout_raises(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        RequestTracker().new_request("t", None, timeout, now=0.0)


def test_misuse_of_type_and_id_factory_raises() -> None:
    with pytest.raises(TypeError, match="request type must be str"):
        RequestTracker().new_request(5, None, 1.0, now=0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="id factory returned int"):
        RequestTracker(id_factory=lambda: 5).new_request(  # type: ignore[arg-type, return-value]
            "t", None, 1.0, now=0.0
        )
    tracker = RequestTracker(id_factory=lambda: "same")
    tracker.new_request("t", None, 1.0, now=0.0)
    with pytest.raises(ValueError, match="already pending"):
        tracker.new_request("t", None, 1.0, now=0.0)
    assert len(tracker) == 1


def test_heap_garbage_stays_bounded() -> None:
    tracker = RequestTracker()
    keep = tracker.new_request("keep", None, 1.0, now=0.0)
    for n in range(2000):
        request = tracker.new_request("t", n, 100.0 + n, now=0.0)
        assert tracker.match(Envelope("r", None, request.id)) is request
    assert len(tracker._heap) <= 2 * len(tracker) + 65
    assert tracker.expire(1.0) == [keep]
    assert tracker.stats() == RequestStats(sent=2001, replied=2000, timed_out=1)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["new", "reply", "expire", "cancel"]),
            st.floats(0.01, 5.0),
            st.integers(0, 30),
        ),
        max_size=60,
    )
)
def test_every_request_ends_exactly_once(ops: list[tuple[str, float, int]]) -> None:
    """Random schedules: no request is lost or reported twice, and deadlines are honoured."""
    tracker = RequestTracker()
    now = 0.0
    created: dict[str, PendingRequest] = {}
    ended: list[str] = []
    for op, amount, index in ops:
        if op == "new":
            request = tracker.new_request("t", index, amount, now=now)
            created[request.id] = request
        elif op == "reply":
            found = tracker.match(Envelope("r", None, f"req-{index}"))
            if found is not None:
                assert found.deadline > now
                ended.append(found.id)
        elif op == "expire":
            now += amount
            for request in tracker.expire(now):
                assert request.deadline <= now
                ended.append(request.id)
        else:
            cancelled = tracker.cancel(f"req-{index}")
            if cancelled is not None:
                ended.append(cancelled.id)
        deadline = tracker.next_deadline()
        live = [r.deadline for r in created.values() if r.id not in ended]
        assert deadline == (min(live) if live else None)
    ended.extend(r.id for r in tracker.cancel_all())
    assert sorted(ended) == sorted(created)
    stats = tracker.stats()
    assert stats.sent == len(created)
    assert stats.replied + stats.timed_out + stats.cancelled == len(created)
    assert stats.pending == 0


def test_expire_skips_requests_answered_behind_the_head() -> None:
    tracker = RequestTracker()
    a = tracker.new_request("a", None, 1.0, now=0.0)
    b = tracker.new_request("b", None, 2.0, now=0.0)
    c = tracker.new_request("c", None, 3.0, now=0.0)
    assert tracker.match(Envelope("r", None, b.id)) is b
    assert tracker.expire(5.0) == [a, c]
    assert tracker.stats() == RequestStats(sent=3, replied=1, timed_out=2)


def test_router_module_is_pure() -> None:
    """The core may not import I/O, clocks, threads or randomness (see docs/architecture.md)."""
    import ast
    import inspect

    import zenws_core._router as module

    tree = ast.parse(inspect.getsource(module))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module.split(".")[0])
    forbidden = {"socket", "ssl", "selectors", "asyncio", "trio", "anyio", "curio", "threading"}
    forbidden |= {"subprocess", "time", "os", "random"}
    assert imported
    assert not imported & forbidden


def test_routers_and_trackers_never_share_their_tables() -> None:
    """Idle routers share one empty table (memory); the first route gets a table of its own."""
    first: MessageRouter[str] = MessageRouter()
    second: MessageRouter[str] = MessageRouter()
    first.on("task.update", "exact")
    first.on("task.*", "prefix")
    first.on_default("default")
    first.on_raw("raw")
    assert first.handlers_for("task.update") == ("exact", "prefix")
    assert first.handlers_for("other") == ("default",)
    assert first.route(b"\x00binary").handlers == ("raw",)
    assert second.handlers_for("task.update") == ()
    assert second.handlers_for("other") == ()
    assert second.route(b"\x00binary").handlers == ()
    assert not second.has_handlers
    assert first.off_default("default")
    assert first.off_raw("raw")
    assert first.handlers_for("other") == ()
    assert first.route(b"\x00").handlers == ()
    one, two = RequestTracker(), RequestTracker()
    request = one.new_request("job", None, 5.0, now=0.0)
    assert request.id in one
    assert request.id not in two
    assert (len(one), len(two)) == (1, 0)
