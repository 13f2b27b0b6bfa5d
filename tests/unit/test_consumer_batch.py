"""Pure batch building: rows per table, dead letters, commit points, deterministic tokens."""

from __future__ import annotations

from consumers.batch import Message, RecentIds, build_batch, merge_batches
from schemas.events import CacheStatus, CircuitChangeEvent, RequestEvent


def request_message(offset: int, event_id: str, partition: int = 0) -> Message:
    event = RequestEvent(
        event_id=event_id,
        category="anime",
        endpoint="/api/v1/home",
        path="/api/v1/home",
        status=200,
        cache_status=CacheStatus.HIT,
        latency_ms=1.0,
    )
    return Message("apicat.events.request", partition, offset, event.model_dump_json().encode())


def circuit_message(offset: int) -> Message:
    event = CircuitChangeEvent(
        upstream_url="http://u", from_state="closed", to_state="open", consecutive_failures=5
    )
    return Message("apicat.events.circuit_change", 1, offset, event.model_dump_json().encode())


def test_messages_become_one_insert_per_table_and_commit_points_per_partition() -> None:
    batch = build_batch([request_message(5, "a"), request_message(6, "b"), circuit_message(9)])
    tables = {insert.table: len(insert.rows) for insert in batch.inserts}
    assert tables == {"requests": 2, "circuit_changes": 1}
    assert batch.commit_offsets == {
        ("apicat.events.request", 0): 7,
        ("apicat.events.circuit_change", 1): 10,
    }


def test_poison_messages_become_dead_letters_but_are_still_committed() -> None:
    garbage = Message("apicat.events.request", 0, 3, b"{not json")
    wrong = Message("apicat.events.request", 0, 4, b'{"type": "request", "status": "x"}')
    batch = build_batch([garbage, wrong, request_message(5, "a")])
    assert [d.message.offset for d in batch.dead_letters] == [3, 4]
    assert all(d.reason for d in batch.dead_letters)
    assert batch.rows == 1
    assert batch.commit_offsets[("apicat.events.request", 0)] == 6


def test_same_events_give_the_same_token_and_different_events_a_different_one() -> None:
    first = build_batch([request_message(1, "a"), request_message(2, "b")])
    again = build_batch([request_message(7, "a"), request_message(8, "b")])
    other = build_batch([request_message(1, "a"), request_message(2, "c")])
    assert first.inserts[0].dedup_token == again.inserts[0].dedup_token
    assert first.inserts[0].dedup_token != other.inserts[0].dedup_token


def test_re_sent_events_are_skipped_once_stored_and_never_before() -> None:
    recent = RecentIds(capacity=10)
    first = build_batch([request_message(1, "a"), request_message(2, "a")], recent)
    assert (first.rows, first.duplicates) == (1, 1)
    replay = build_batch([request_message(1, "a")], recent)
    assert replay.rows == 1, "not stored yet: a failed insert must be retried in full"
    recent.add_many(first.inserts[0].event_ids)
    resent = build_batch([request_message(3, "a")], recent)
    assert (resent.rows, resent.duplicates) == (0, 1)


def test_events_of_the_batch_in_flight_are_skipped_as_re_sends() -> None:
    batch = build_batch([request_message(1, "a"), request_message(2, "b")], in_flight={"a"})
    assert (batch.rows, batch.duplicates) == (1, 1)
    assert batch.inserts[0].event_ids == ("b",)


def test_merged_batches_make_one_insert_per_table_with_the_token_of_all_their_events() -> None:
    first = build_batch([request_message(1, "a"), circuit_message(4)])
    garbage = Message("apicat.events.request", 0, 3, b"{not json")
    second = build_batch([request_message(2, "b"), garbage, request_message(5, "c", 1)])
    third = build_batch([request_message(7, "d", 1)])

    merged = merge_batches(first, second, third)

    requests = next(insert for insert in merged.inserts if insert.table == "requests")
    assert requests.event_ids == ("a", "b", "c", "d")
    assert (
        requests.dedup_token
        == build_batch(
            [
                request_message(1, "a"),
                request_message(2, "b"),
                request_message(5, "c", 1),
                request_message(7, "d", 1),
            ]
        )
        .inserts[0]
        .dedup_token
    )
    assert merged.rows == 5
    assert [d.message.offset for d in merged.dead_letters] == [3]
    assert merged.commit_offsets == {
        ("apicat.events.request", 0): 4,
        ("apicat.events.request", 1): 8,
        ("apicat.events.circuit_change", 1): 5,
    }
