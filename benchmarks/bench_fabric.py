"""Timings of the fabric models on the two largest catalog fabrics.

For the 16,384-GPU multi-plane fat-tree (``h800-mpft``) and the 384-NPU CloudMatrix384
supernode: load the cluster from the catalog, build its fabric graph, and answer an all-to-all
estimate (flat all-to-all over every device, a DeepEP-style dispatch/combine and a max-min rate
solve for one transfer per device). Run: ``python benchmarks/bench_fabric.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware.catalog import get_cluster  # noqa: E402
from hardware.collectives import collective_time  # noqa: E402
from hardware.dispatch import dispatch_combine_time  # noqa: E402
from hardware.fabric_graph import build_fabric_graph, transfer_rates  # noqa: E402


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    for name in ("h800-mpft", "cloudmatrix384"):
        cluster, t_load = _timed(lambda: get_cluster(name))
        fabric, t_graph = _timed(lambda: build_fabric_graph(cluster))
        n = cluster.num_devices
        a2a, t_a2a = _timed(lambda: collective_time("all_to_all", 1e9, n, cluster))
        ep = min(n, 256)
        disp, t_disp = _timed(lambda: dispatch_combine_time(4096, 7168, 8, ep, cluster, num_experts=256))
        # a shifted permutation: every device sends to the device half the cluster away
        pairs = [(d, (d + n // 2) % n) for d in range(n)]
        rates, t_flows = _timed(lambda: transfer_rates(fabric, pairs))
        total = t_load + t_graph + t_a2a + t_disp
        print(f"{name}: {n} devices, graph {fabric.graph.number_of_nodes()} vertices / "
              f"{fabric.graph.number_of_edges()} edges, {len(fabric.capacities)} links")
        print(f"  load catalog          {t_load * 1e3:8.2f} ms")
        print(f"  build fabric graph    {t_graph * 1e3:8.2f} ms")
        print(f"  all-to-all estimate   {t_a2a * 1e3:8.2f} ms  ({a2a.seconds * 1e3:.3f} ms for 1 GB/rank, {a2a.algorithm})")
        print(f"  dispatch/combine EP{ep:<4}{t_disp * 1e3:7.2f} ms  (dispatch {disp.dispatch_s * 1e6:.0f} us, "
              f"combine {disp.combine_s * 1e6:.0f} us)")
        print(f"  total (load+graph+a2a+dispatch) {total * 1e3:.1f} ms  [< 1000 ms required]")
        print(f"  max-min rates, {len(pairs)} transfers {t_flows * 1e3:8.2f} ms  (min {min(rates) / 1e9:.1f} GB/s)")


if __name__ == "__main__":
    main()
