"""The readings' fast lane at the edge says exactly what the descriptor walk says: the same
readings pass, and a bad one is refused with the same field path and message."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st
from lifeline import validation
from lifeline.errors import InvalidArgument
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor import readings as lane

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
lane.register()  # as monitor's bootstrap does
SKEW_LIMIT = int((NOW + validation.MAX_SKEW).timestamp())


@contextmanager
def walk_only() -> Iterator[None]:
    lanes = dict(validation.FAST_LANES)
    validation.FAST_LANES.clear()
    try:
        yield
    finally:
        validation.FAST_LANES.update(lanes)


def verdict(request: pb.IngestReadingBatchRequest) -> str | None:
    try:
        validation.check_request(request, NOW)
    except InvalidArgument as error:
        return str(error)
    return None


sensor_ids = st.one_of(st.sampled_from(["gauge-00001", "rain-xjh-01", "", "雨量计-7"]),
                       st.text(max_size=140))
values = st.one_of(st.floats(), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([1e308, -1e308]))
seconds = st.one_of(
    st.integers(SKEW_LIMIT - 5, SKEW_LIMIT + 5),
    st.integers(validation.MIN_SECONDS - 2, validation.MIN_SECONDS + 2),
    st.integers(validation.MAX_SECONDS - 2, validation.MAX_SECONDS + 2),
    st.integers(0, SKEW_LIMIT), st.integers(-2**63, 2**63 - 1))
nanos = st.one_of(st.just(0), st.integers(-2**31, 2**31 - 1), st.integers(0, 999_999_999))
stamps = st.one_of(st.none(), st.builds(lambda s, n: Timestamp(seconds=s, nanos=n),
                                        seconds, nanos))
readings = st.builds(
    lambda sensor_id, value, stamp: pb.Reading(sensor_id=sensor_id, value=value,
                                               measured_at=stamp),
    sensor_ids, values, stamps)


@settings(max_examples=400, deadline=None)
@given(st.lists(readings, max_size=12))
def test_the_fast_lane_refuses_what_the_walk_refuses_with_the_same_words(
        items: list[pb.Reading]) -> None:
    request = pb.IngestReadingBatchRequest(readings=items)
    with walk_only():
        expected = verdict(request)
    assert verdict(request) == expected


def test_a_clean_batch_is_read_once_and_its_columns_are_the_readings() -> None:
    when = Timestamp(seconds=SKEW_LIMIT - 600, nanos=500_000_000)
    request = pb.IngestReadingBatchRequest(readings=[
        pb.Reading(sensor_id=f"gauge-{i}", value=i / 2, measured_at=when) for i in range(5)]
        + [pb.Reading(sensor_id="unset-time", value=1.0)])
    validation.check_request(request, NOW)
    columns = lane.checked_readings(request.readings, NOW)
    assert columns == lane.checked_readings(
        list(request.readings), NOW)  # read afresh: the same
    assert columns.sensor_ids == [*(f"gauge-{i}" for i in range(5)), "unset-time"]
    assert columns.values == [0.0, 0.5, 1.0, 1.5, 2.0, 1.0]
    assert columns.times[:5] == [SKEW_LIMIT - 600 + 0.5] * 5 and columns.times[5] == 0.0


def test_readings_the_edge_did_not_see_are_checked_naming_the_field() -> None:
    items = [pb.Reading(sensor_id="ok", value=1.0), pb.Reading(sensor_id="bad", value=math.nan)]
    with pytest.raises(InvalidArgument, match=r"readings\[1\]\.value: must be a finite number"):
        lane.checked_readings(items, NOW)
    late = Timestamp()
    late.FromDatetime(NOW + timedelta(hours=1))
    with pytest.raises(InvalidArgument, match=r"readings\[0\]\.measured_at: .* in the future"):
        lane.checked_readings([pb.Reading(sensor_id="ok", measured_at=late)], NOW)


def test_the_lane_covers_every_field_of_a_reading() -> None:
    # A field added to Reading turns the lane off (the walk checks it); this says so.
    assert pb.Reading.DESCRIPTOR.full_name in validation.FAST_LANES
