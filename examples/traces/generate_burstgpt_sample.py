"""Write ``burstgpt_format_generated.csv``: a small *generated* trace in BurstGPT's CSV format.

BurstGPT's data files are Git LFS objects that this repository could not read, so no real row
ships here: this file only has BurstGPT's columns and units (HPMLL/BurstGPT README: ``Timestamp``
in seconds, ``Model`` ChatGPT or GPT-4, ``Request tokens``, ``Response tokens``, ``Total tokens``,
``Log Type`` "Conversation log" or "API log"; failed requests have 0 response tokens). Arrivals
are bursty (gamma gaps, cv 3), lengths lognormal, about 3% of requests failed. Deterministic:

    python examples/traces/generate_burstgpt_sample.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

ROWS = 300
SEED = 20240131


def rows(n: int = ROWS, seed: int = SEED) -> list[list]:
    rng = np.random.default_rng(seed)
    cv = 3.0
    shape = 1.0 / cv**2
    gaps = rng.gamma(shape, 1.0 / (2.0 * shape), size=n)  # mean 0.5 s: 2 requests/s
    t = np.floor(np.cumsum(gaps)).astype(int)  # BurstGPT's timestamps are whole seconds
    out = []
    for i in range(n):
        model = "GPT-4" if rng.random() < 0.25 else "ChatGPT"
        log = "API log" if rng.random() < 0.4 else "Conversation log"
        req = int(np.clip(np.rint(rng.lognormal(np.log(600), 1.0)), 1, 16000))
        resp = 0 if rng.random() < 0.03 else int(np.clip(np.rint(rng.lognormal(np.log(250), 0.8)), 1, 4000))
        out.append([int(t[i]), model, req, resp, req + resp, log])
    return out


def main() -> None:
    path = Path(__file__).with_name("burstgpt_format_generated.csv")
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"])
        w.writerows(rows())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
