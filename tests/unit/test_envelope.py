"""The envelope codec and event ids: every event id is a well-formed random UUID."""
import uuid
from datetime import datetime, timezone

from shared import envelope as env
from shared.contracts.checkpoint import PassIssued, PassIssuedV1
from shared.contracts.quarantine import CheckinMissed


def test_event_ids_are_version_4_uuids_in_canonical_text():
    ids = [env.new_id() for _ in range(20_000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    assert len(set(ids)) == len(ids)


def test_every_variant_nibble_is_one_of_8_9_a_b():
    assert {env.new_id()[19] for _ in range(2_000)} == set("89ab")


def test_an_envelope_round_trips_with_its_typed_event():
    at = datetime(2026, 11, 2, 20, 30, tzinfo=timezone.utc)
    event = CheckinMissed(community="c-1", case="case-1", resident="r-1", on=at.date(), missed_at=at,
                          missed_by="system:checkin-scheduler")
    wrapped = env.wrap(event, stream_id="checkin:case-1:2026-11-02", stream_version=1, occurred_at=at,
                       actor="system:checkin-scheduler", correlation_id="cmd-1", recorded_at=at)
    raw, decoded = env.decode(env.encode(wrapped))
    assert decoded == event
    assert (raw.type, raw.schema, raw.stream_version, raw.event_id) == ("CheckinMissed", 1, 1, wrapped.event_id)


def test_each_schema_of_a_type_decodes_to_its_own_class_and_an_old_one_upcasts_to_the_current():
    at = datetime(2026, 11, 2, 20, 30, tzinfo=timezone.utc)
    old = PassIssuedV1(community="c-1", pass_="p-1", number="7K3QDX9M2A", compound="x", household="h-1",
                       issued_at=at, issued_by="staff:li")
    payloads = [env.encode(env.wrap(e, stream_id="passes:h-1", stream_version=1, occurred_at=at, actor="staff:li",
                                    correlation_id="c")) for e in (old, old.upcast())]
    (raw_old, decoded_old), (raw_new, decoded_new) = (env.decode(p) for p in payloads)
    assert (raw_old.type, raw_old.schema, type(decoded_old)) == ("PassIssued", 1, PassIssuedV1)
    assert (raw_new.type, raw_new.schema, type(decoded_new)) == ("PassIssued", 2, PassIssued)
    assert decoded_old == old and decoded_old.upcast() == decoded_new
    assert b"7K3QDX9M2A" in payloads[0] and b"7K3QDX9M2A" not in payloads[1]
    assert env.lookup("PassIssued", 1) is PassIssuedV1 and env.lookup("PassIssued", 2) is PassIssued
