"""Encode/decode rates per message type and sign/seal/open/verify rates of the suite.

Run with ``make bench-wire`` (or ``python -m benchmarks.wire_crypto``). Each operation is
timed over repeated batches and the median rate is reported, so one noisy batch on a shared
machine does not decide the figure. A benchmark reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import crypto_cases, mvpn_wire_cases, wire_cases


def rate(operation: Callable[[], object], seconds: float, batches: int = 5) -> float:
    """Median operations per second of ``operation`` over ``batches`` timed batches."""
    # Calibrate a batch size that takes about seconds / batches.
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            operation()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / batches / 4 or n >= 1 << 22:
            break
        n *= 2
    per_batch = max(1, int(n * (seconds / batches) / max(elapsed, 1e-9)))
    rates = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(per_batch):
            operation()
        rates.append(per_batch / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    """Time every case, print a Markdown table, and write JSON results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per operation")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/wire_crypto.json"))
    args = parser.parse_args(argv)

    results: dict[str, dict[str, float]] = {"wire": {}, "crypto": {}}
    print("| message | encode /s | decode /s |")
    print("| --- | ---: | ---: |")
    for name, encode, decode in [*wire_cases.cases(), *mvpn_wire_cases.cases()]:
        enc, dec = rate(encode, args.seconds), rate(decode, args.seconds)
        results["wire"][f"{name}.encode_per_s"] = enc
        results["wire"][f"{name}.decode_per_s"] = dec
        print(f"| {name} | {enc:,.0f} | {dec:,.0f} |")
        sys.stdout.flush()
    print()
    print("| operation | per s |")
    print("| --- | ---: |")
    for name, operation in crypto_cases.cases():
        value = rate(operation, args.seconds)
        results["crypto"][f"{name}_per_s"] = value
        print(f"| {name} | {value:,.0f} |")
        sys.stdout.flush()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
