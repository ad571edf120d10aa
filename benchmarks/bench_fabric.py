"""Timings of the fabric models on the two largest catalog fabrics.

For the 16,384-GPU multi-plane fat-tree (``h800-mpft``) and the 384-NPU CloudMatrix384
supernode: load the cluster from the catalog and answer an all-to-all estimate (flat
all-to-all over every device, a DeepEP-style dispatch/combine), then a max-min rate solve of
KV transfers (``hardware.kv_transfer`` links, ``hardware.flows``) with one 8-device prefill
instance per 8 devices of half the cluster, each sending to an 8-device decode instance of the
other half. Run: ``python benchmarks/bench_fabric.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware.catalog import get_cluster  # noqa: E402
from hardware.collectives import collective_time  # noqa: E402
from hardware.dispatch import dispatch_combine_time  # noqa: E402
from hardware.flows import maxmin_rates  # noqa: E402
from hardware.kv_transfer import kv_link_capacities, kv_path  # noqa: E402


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _kv_rates(cluster) -> list[float]:
    """Max-min rates of one transfer per prefill instance (8 devices each, half the cluster)."""
    pairs = cluster.num_devices // 16
    caps = kv_link_capacities(cluster, {i: 8 for i in range(2 * pairs)}, 8 * pairs, 8 * pairs)
    return maxmin_rates([kv_path(i, pairs + i) for i in range(pairs)], caps)


def main() -> None:
    for name in ("h800-mpft", "cloudmatrix384"):
        cluster, t_load = _timed(lambda: get_cluster(name))
        n = cluster.num_devices
        a2a, t_a2a = _timed(lambda: collective_time("all_to_all", 1e9, n, cluster))
        ep = min(n, 256)
        disp, t_disp = _timed(lambda: dispatch_combine_time(4096, 7168, 8, ep, cluster, num_experts=256))
        rates, t_flows = _timed(lambda: _kv_rates(cluster))
        total = t_load + t_a2a + t_disp
        print(f"{name}: {n} devices")
        print(f"  load catalog          {t_load * 1e3:8.2f} ms")
        print(f"  all-to-all estimate   {t_a2a * 1e3:8.2f} ms  ({a2a.seconds * 1e3:.3f} ms for 1 GB/rank, {a2a.algorithm})")
        print(f"  dispatch/combine EP{ep:<4}{t_disp * 1e3:7.2f} ms  (dispatch {disp.dispatch_s * 1e6:.0f} us, "
              f"combine {disp.combine_s * 1e6:.0f} us)")
        print(f"  total (load+a2a+dispatch) {total * 1e3:.1f} ms  [< 1000 ms required]")
        print(f"  max-min rates, {len(rates)} KV transfers {t_flows * 1e3:8.2f} ms  (min {min(rates) / 1e9:.1f} GB/s)")


if __name__ == "__main__":
    main()
