"""The one broadcast helper's sender, over the real Redis channel layer."""

from __future__ import annotations

import asyncio
import uuid

from channels.layers import get_channel_layer

from tracing.platform.live import _Sender


def test_it_sends_a_group_s_queued_events_as_one_batch_in_order():
    async def scenario():
        layer = get_channel_layer()
        group, other = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        await layer.group_add(other, channel)
        items = [
            (group, {"type": "live.event", "group": group, "event": {"n": 1}}),
            (other, {"type": "live.event", "group": other, "event": {"n": 2}}),
            (group, {"type": "live.event", "group": group, "event": {"n": 3}}),
        ]
        await _Sender._send(layer, items)
        first = await asyncio.wait_for(layer.receive(channel), 5)
        second = await asyncio.wait_for(layer.receive(channel), 5)
        await layer.group_discard(group, channel)
        await layer.group_discard(other, channel)
        return first, second

    first, second = asyncio.run(scenario())
    assert first == {"type": "live.batch", "group": first["group"], "events": [{"n": 1}, {"n": 3}]}
    assert second["type"] == "live.event" and second["event"] == {"n": 2}
