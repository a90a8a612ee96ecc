"""Talking to huiying over NATS from Python (nats-py): queue two pictures, read their results.

    pip install nats-py
    NATS_URL=nats://127.0.0.1:4222 NATS_USER=... NATS_PASSWORD=... python3 huiying_nats.py

The login needs the rights of a publisher of image.requested and a reader of its own
durable consumer (docs/subscribers.md shows both in nats.conf).
"""

import asyncio
import json
import os
import uuid

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


async def main():
    nc = await nats.connect(
        os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        user=os.environ.get("NATS_USER"),
        password=os.environ.get("NATS_PASSWORD"),
    )
    js = nc.jetstream()

    # Results through a durable consumer of our own, made before we publish so that no
    # result can come first; it remembers what we acknowledged.
    consumer = await js.pull_subscribe(
        "image.completed",
        durable="python-example",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW),
    )
    # With an id: the Nats-Msg-Id makes a repeated publish (a retry after a timeout) one job.
    job_id = str(uuid.uuid4())
    request = json.dumps({"id": job_id, "prompt": "a lighthouse from Python", "model": "huiying/placeholder"})
    for _ in range(2):
        await js.publish("image.requested", request.encode(), headers={"Nats-Msg-Id": f"image.requested:{job_id}"})
    # Without an id: the generator derives one from the message's place in the stream.
    await js.publish("image.requested", json.dumps({"prompt": "a harbour from Python"}).encode())
    print(f"queued {job_id} and one without an id", flush=True)

    wanted = {"a lighthouse from Python", "a harbour from Python"}
    while wanted:
        for message in await consumer.fetch(1, timeout=60):
            event = json.loads(message.data)
            if event["prompt"] in wanted:
                wanted.discard(event["prompt"])
                print(f"completed {event['id']} {event['url']}", flush=True)
            await message.ack()  # after our side effect (here: the line above)
    await nc.close()


asyncio.run(main())
