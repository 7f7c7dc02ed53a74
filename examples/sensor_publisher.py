"""A sensor publisher for edgefuse's ZeroMQ source (docs/sensors.md), in plain Python: pyzmq + msgpack.

It binds a PUB socket and sends one reading per period, stamped with the sensor's own clock (wall-clock ns here,
deliberately not the host's monotonic clock: edgefuse estimates the offset and drift itself).

    python examples/sensor_publisher.py --endpoint tcp://127.0.0.1:5600 --topic env \
        --channels motion,door,temperature,humidity,light,smoke --rate 10

The values are a hallway's, in the units and ranges the smart_home scenario was trained on (docs/sensors.md):
a quiet house by default, or `--scene cooking|alarm|entering` to see what those events look like to the model.

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

# A quiet hallway in the units of the smart_home training data: motion and door 0/1, temperature degC (18-25),
# humidity %RH (30-60), light lux (5-400), smoke the detector's 0-1 obscuration (about 0.01 when clear).
QUIET = {"motion": 0.0, "door": 0.0, "temperature": 21.5, "humidity": 45.0, "light": 120.0, "smoke": 0.01}


def reading(t_s: float, channels: list[str], scene: str = "quiet", since_s: float = 0.0) -> list[float]:
    """One row for `channels` at t_s; `since_s` = seconds since the scene's event began."""
    v = dict(QUIET)
    v["temperature"] += 0.1 * math.sin(t_s / 60.0)  # slow drift of the room
    v["humidity"] += 1.0 * math.sin(t_s / 90.0)
    if scene == "cooking":  # a steam plume: temperature and humidity climb
        v["temperature"] += 0.08 * since_s
        v["humidity"] = min(100.0, v["humidity"] + 1.0 * since_s)
    elif scene == "alarm":  # smoke over the detector, rising
        v["smoke"] = min(1.0, 0.2 + 0.03 * since_s)
        v["temperature"] += 0.03 * since_s
    elif scene == "entering":  # the front door opens, someone walks in and switches the light on
        v["door"], v["motion"], v["light"] = 1.0, 1.0, 250.0 if since_s > 1.0 else 120.0
    rounding = {"temperature": 2, "humidity": 1, "light": 0, "smoke": 3}
    return [round(v[c], rounding.get(c, 0)) if c in v else 0.0 for c in channels]


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
    p.add_argument(
        "--scene", choices=["quiet", "cooking", "alarm", "entering"], default="quiet", help="what the sensors see"
    )
    args = p.parse_args()

    channels = args.channels.split(",")
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.bind(args.endpoint)
    period_s = args.rows / args.rate
    seq, next_t = 0, time.monotonic()
    t0 = time.time()
    while args.count == 0 or seq < args.count:
        # the sensor's clock, at the first row of the batch (the last row is the one just read)
        t_sensor_ns = time.time_ns() - round((args.rows - 1) * 1e9 / args.rate)
        ts = [t_sensor_ns / 1e9 + i / args.rate for i in range(args.rows)]
        rows = [reading(t, channels, args.scene, max(0.0, t - t0)) for t in ts]
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
