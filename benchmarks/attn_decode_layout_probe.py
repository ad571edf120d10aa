"""Device probe: why decode attention runs slower in the microbenchmark than inside a model.

Times SDPA decode (pack_q GQA, Llama-8B heads 32q/8kv, d=128) at B=128, C=4096 with CUDA-graph
replay in four layouts: (a) the microbenchmark's own [B,Hkv,C,D] tensors, (b) the ground
truth's slices of a stacked [2,B,Hkv,C+1,D] cache, (c) like (a) with C+1 keys, (d) (b) over 32
rotating layer caches. Prints seconds and GB/s for each.
"""

from pathlib import Path

from calibration.bench.common import BenchContext, time_calls

import torch
import torch.nn.functional as F


def graph_time(fn):
    """Seconds of one call: the calibration's timing (CUDA-graph replay of repeated calls)."""
    return time_calls([fn], BenchContext(out_dir=Path(".")))[0]


def main():
    dev = "cuda"
    bf = torch.bfloat16
    for B, C in ((16, 4096), (32, 4096), (128, 4096), (256, 1024), (64, 2048)):
        hkv, g, d = 8, 4, 128
        q = torch.randn(B, hkv, g, d, device=dev, dtype=bf)
        kv_bytes = 2 * B * hkv * C * d * 2
        k = torch.randn(B, hkv, C, d, device=dev, dtype=bf)
        v = torch.randn(B, hkv, C, d, device=dev, dtype=bf)
        ta = graph_time(lambda: F.scaled_dot_product_attention(q, k, v))
        kv = torch.randn(2, B, hkv, C + 1, d, device=dev, dtype=bf)
        tb = graph_time(lambda: F.scaled_dot_product_attention(q, kv[0], kv[1]))
        k1 = torch.randn(B, hkv, C + 1, d, device=dev, dtype=bf)
        v1 = torch.randn(B, hkv, C + 1, d, device=dev, dtype=bf)
        tc = graph_time(lambda: F.scaled_dot_product_attention(q, k1, v1))
        layers = [torch.randn(2, B, hkv, C + 1, d, device=dev, dtype=bf) for _ in range(8)]

        def many():
            for L in layers:
                F.scaled_dot_product_attention(q, L[0], L[1])

        td = graph_time(many) / len(layers)
        # what the model does per layer: a q reshaped from a projection output
        qkv = torch.randn(B, (32 + 16) * d, device=dev, dtype=bf)

        def model_like():
            qq = qkv[:, : 32 * d].view(B, hkv, g, d)
            return F.scaled_dot_product_attention(qq, kv[0], kv[1])

        te = graph_time(model_like)
        for name, t in (("a bench", ta), ("b gt-slices", tb), ("c C+1", tc), ("d 8 layers", td), ("e gt q view", te)):
            print(f"B={B} C={C} {name:12s} {t * 1e6:8.1f} us {kv_bytes / t / 1e9:7.0f} GB/s", flush=True)
        del k, v, kv, k1, v1, layers
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
