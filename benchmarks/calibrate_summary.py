"""Print a short summary of a calibration output directory (row counts, peak rates).

Usage: python benchmarks/calibrate_summary.py DIR [DIR ...]
"""

import sys
from pathlib import Path

import pandas as pd

for d in sys.argv[1:]:
    print(f"== {d}")
    for f in sorted(Path(d).glob("*.csv")):
        df = pd.read_csv(f)
        line = f"{f.name:28s} rows={len(df):4d}"
        for col in ("tflops", "gbps", "busbw"):
            if col in df and len(df):
                line += f" max_{col}={df[col].max():.4g}"
        for col in ("backend", "impl", "method", "gqa_impl", "cuda_graph"):
            if col in df and len(df):
                line += f" {col}={dict(df[col].value_counts())}"
        if "seconds" in df and len(df):
            line += f" sum_s={df['seconds'].sum():.3g}"
        print(line)
