"""Makes a longer session out of a real xplane.pb, for `cargo xtask bench`.

Every line's events are repeated FACTOR times (a fraction repeats the first
part of each line once more), copy k shifted by k times the plane's span, so
each line stays in time order, its metadata is shared, and the file keeps the
structure of the capture it came from.

Usage: python3 tile_xplane.py PROTO_DIR IN OUT FACTOR
  PROTO_DIR: a folder holding xplane_min_pb2.py (the tpu-synth generator's)
The Python needs the `protobuf` package. Used for the benchmark captures:
FACTOR 5.4 (about 37 MB, 2.0 M events) and 21.1 (about 138 MB, 7.8 M
events) of the sglang-jax 0.0.1.post1 CPU capture (9.7 MB, 369 k events).
"""
import math
import sys

proto_dir, src, dst, factor = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sys.path.insert(0, proto_dir)
import xplane_min_pb2 as pb  # noqa: E402

space = pb.XSpace()
with open(src, 'rb') as f:
    space.ParseFromString(f.read())
for plane in space.planes:
    times = [(l.timestamp_ns * 1000 + e.offset_ps, e.duration_ps) for l in plane.lines for e in l.events]
    if not times:
        continue
    span = max(t + d for t, d in times) - min(t for t, _ in times) + 1000
    for line in plane.lines:
        events = list(line.events)
        for k in range(1, math.ceil(factor)):
            part = events if k + 1 <= factor else events[:int(len(events) * (factor - k))]
            for event in part:
                copy = line.events.add()
                copy.CopyFrom(event)
                if copy.WhichOneof('data') != 'num_occurrences':
                    copy.offset_ps = event.offset_ps + k * span
data = space.SerializeToString()
with open(dst, 'wb') as f:
    f.write(data)
print(dst, len(data), 'bytes,', sum(len(l.events) for p in space.planes for l in p.lines), 'events')
