"""The worker's inference lanes, as `Settings` choose them (`streams.worker.encoders`)."""

from __future__ import annotations

import pytest

from streams.config.settings import Settings
from streams.worker.encoders import inference_lanes, inference_pool


@pytest.mark.parametrize(("settings", "lanes", "lane_threads"), [
    (Settings(device="cpu", torch_threads=2), 2, 1),  # the 2-core default: one thread a lane
    (Settings(device="cpu", torch_threads=8), 2, 4),
    (Settings(device="cpu", torch_threads=1), 1, 1),
    (Settings(device="cpu", torch_threads=2, torch_compile=True), 1, 2),
    (Settings(device="cpu", torch_threads=6, inference_lanes=3), 3, 2),
    (Settings(device="cpu", torch_threads=2, inference_lanes=4), 4, 1),  # never below one
])
def test_the_torch_threads_are_split_between_the_lanes(settings, lanes, lane_threads):
    pool = inference_pool(settings)
    try:
        assert (pool.lanes, pool.lane_threads) == (lanes, lane_threads)
    finally:
        pool.shutdown()


def test_lanes_are_a_setting_with_a_clear_bound():
    with pytest.raises(ValueError, match="inference_lanes"):
        Settings(inference_lanes=-1)


@pytest.mark.parametrize(("in_flight", "lanes", "batches"), [
    (0, 2, 3),  # auto: one batch per lane plus the one being written
    (1, 1, 1),  # the serial pipeline: one lane, so its batch gets every thread
    (2, 1, 2),  # one batch embedding at a time: one lane
    (3, 2, 3),
])
def test_the_lanes_never_outnumber_the_batches_the_flow_can_prepare(in_flight, lanes, batches):
    settings = Settings(device="cpu", torch_threads=2, pipeline_in_flight=in_flight)
    assert inference_lanes(settings) == lanes
    assert settings.batches_in_flight(inference_lanes(settings)) == batches
