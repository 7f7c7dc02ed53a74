"""A sensor publisher for edgefuse's ZeroMQ source (docs/sensors.md), in plain Python: pyzmq + msgpack.

It binds a PUB socket and sends one reading per period, stamped with the sensor's own clock (wall-clock ns here,
deliberately not the host's monotonic clock: edgefuse estimates the offset and drift itself).

    python examples/sensor_publisher.py --endpoint tcp://127.0.0.1:5600 --topic env \
        --channels motion,door,temperature,humidity,light,smoke --rate 10

and in the scenario YAML:

    env:
      kind: series
      rate_hz: 10
      channels: [motion, door, temperature, humidity, light, smoke]
      source: {type: zmq, uri: "tcp://127.0.0.1:5600", topic: env}
"""

from __future__ import annotations

import argparse
import json
import math
import time

import msgpack
import zmq


def reading(t_s: float, channels: list[str]) -> list[float]:
    """Made-up slowly varying values, one per channel."""
    return [round(math.sin(t_s / (i + 1)) + i, 4) for i in range(len(channels))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5600", help="address to bind the PUB socket on")
    p.add_argument("--topic", default="env", help="first frame of every message (the source's `topic` filter)")
    p.add_argument("--source", default="example-node", help="this publisher's name (the 'source' field)")
    p.add_argument("--channels", default="motion,door,temperature,humidity,light,smoke")
    p.add_argument("--rate", type=float, default=10.0, help="readings per second")
    p.add_argument("--rows", type=int, default=1, help="readings batched per message")
    p.add_argument("--format", choices=["msgpack", "json"], default="msgpack")
    p.add_argument("--count", type=int, default=0, help="messages to send (0 = forever)")
    args = p.parse_args()

    channels = args.channels.split(",")
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.bind(args.endpoint)
    period_s = args.rows / args.rate
    seq, next_t = 0, time.monotonic()
    while args.count == 0 or seq < args.count:
        # the sensor's clock, at the first row of the batch (the last row is the one just read)
        t_sensor_ns = time.time_ns() - round((args.rows - 1) * 1e9 / args.rate)
        rows = [reading(t_sensor_ns / 1e9 + i / args.rate, channels) for i in range(args.rows)]
        msg = {
            "v": 1,
            "source": args.source,
            "seq": seq,
            "t_sensor_ns": t_sensor_ns,
            "channels": channels,
            "values": rows if args.rows > 1 else rows[0],
            "rate_hz": args.rate,
        }
        payload = msgpack.packb(msg) if args.format == "msgpack" else json.dumps(msg).encode()
        sock.send_multipart([args.topic.encode(), payload])
        seq += 1
        next_t += period_s
        time.sleep(max(0.0, next_t - time.monotonic()))


if __name__ == "__main__":
    main()
