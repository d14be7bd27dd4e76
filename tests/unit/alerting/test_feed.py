"""The live alert feed: filters, fan-out, duplicates hidden, slow subscribers bounded."""

from __future__ import annotations

import asyncio

from streams.alerting.alerts import Alert
from streams.alerting.feed import AlertFeed, AlertFilter


def alert(query_id="q", source="cam-1", severity="warning", item="k"):
    return Alert.build(query_id=query_id, item_key=item, query_name="n", modality="video",
                       source=source, ts=1, score=0.9, threshold=0.5, severity=severity)


def test_filters():
    a = alert()
    assert AlertFilter().accepts(a)
    assert AlertFilter(query_id="q", severity="warning", source_glob="cam-*").accepts(a)
    assert not AlertFilter(query_id="other").accepts(a)
    assert not AlertFilter(severity="critical").accepts(a)
    assert not AlertFilter(source_glob="mic-*").accepts(a)


def test_fan_out_only_matching_and_once():
    async def run():
        feed = AlertFeed(queue_size=2)
        async with feed.subscribe(AlertFilter(query_id="q")) as mine, \
                feed.subscribe(AlertFilter()) as every:
            feed.publish(alert(item="1"))
            feed.publish(alert(item="1"))  # same alert_id again: hidden
            feed.publish(alert(query_id="other", item="2"))
            feed.publish(alert(item="3"))
            got_mine = [mine.get_nowait().item_key for _ in range(mine.qsize())]
            got_every = [every.get_nowait().item_key for _ in range(every.qsize())]
            assert feed.subscriber_count == 2
        assert feed.subscriber_count == 0
        return got_mine, got_every

    mine, every = asyncio.run(run())
    assert mine == ["1", "3"]
    assert every == ["2", "3"]  # bounded queue: the oldest was dropped


def test_closing_the_feed_ends_every_subscription_now_and_later():
    """A stopping worker closes the feed, so SSE handlers return instead of holding the
    web server's shutdown for its whole timeout."""
    async def run():
        feed = AlertFeed()
        async with feed.subscribe(AlertFilter()) as before:
            feed.publish(alert(item="1"))
            feed.close()
            got = [await before.get(), await before.get()]
            async with feed.subscribe(AlertFilter()) as after:
                return got, await after.get()

    got, after = asyncio.run(run())
    assert [a.item_key if a else None for a in got] == ["1", None]
    assert after is None
