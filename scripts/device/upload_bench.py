"""Host-to-device upload of one 224x224 RGB image (602,112 bytes) three ways,
as reef's RT input path could do it: from pageable memory (what
`CudaTaskContext::write_input` does now), from pinned memory, and staged
(a host copy into a pinned buffer, then the pinned upload). Each is
followed by a stream synchronize, as in reef. Median and p90 in us."""
import time

import numpy as np
import torch

N = 3 * 224 * 224
ITERS = 400
src = torch.from_numpy(np.random.default_rng().random(N, dtype=np.float32))
pinned = torch.empty(N, dtype=torch.float32, pin_memory=True)
pinned.copy_(src)
dst = torch.empty(N, dtype=torch.float32, device="cuda")
stream = torch.cuda.Stream()


def pageable():
    dst.copy_(src, non_blocking=True)


def from_pinned():
    dst.copy_(pinned, non_blocking=True)


def staged():
    pinned.copy_(src)
    dst.copy_(pinned, non_blocking=True)


rows = []
with torch.cuda.stream(stream):
    for name, f in [("pageable", pageable), ("pinned", from_pinned), ("staged", staged)] * 2:
        times = []
        for _ in range(ITERS):
            t = time.perf_counter()
            f()
            stream.synchronize()
            times.append((time.perf_counter() - t) * 1e6)
        times.sort()
        rows.append((name, times[len(times) // 2], times[int(len(times) * 0.9)]))
        assert torch.equal(dst.cpu(), src), name
print(f"{'upload':<10} {'p50 us':>8} {'p90 us':>8}")
for name, p50, p90 in rows:
    print(f"{name:<10} {p50:8.1f} {p90:8.1f}")
