"""Budget: a canary degradation leads to a rollback within two sample intervals.

Each trial deploys a canary on the real Kubernetes control plane (tests/harness/kube_real.py) with the real helm, the real registry
and real Prometheus scraping the stable and canary metrics apps, starts observing, and after the
second sample raises the canary's error rate to 20 %. The figure is the time from that change to
the recorded ``rollback.completed``; the baseline is the sample interval measured in the same run
(the mean gap between samples before the change). Ratio = latency / interval, budget <= 2.

    .venv/bin/python bench/canary_rollback.py [--trials 5] [--interval 1s]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--interval", default="1s", help="canary.sample_interval for the trials")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.jsonl"
        env = {
            **os.environ,
            "RAILIANCE_BENCH_OUT": str(out),
            "RAILIANCE_BENCH_TRIALS": str(args.trials),
            "RAILIANCE_BENCH_INTERVAL": args.interval,
        }
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(ROOT),
            "-o",
            "addopts=",
            "bench/scenarios/canary_rollback_scenario.py",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
            print("scenario failed; no figures")
            return 1
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    ratios = []
    print(f"{len(rows)} trials, declared sample interval {args.interval}")
    print(
        f"{'trial':>5} {'interval(s)':>11} {'symptom->rollback(s)':>21} {'ratio':>6} {'samples after':>13}  symptom"
    )
    for r in rows:
        ratio = r["symptom_to_rollback_completed_s"] / r["interval_measured_s"]
        ratios.append(ratio)
        print(
            f"{r['trial']:>5} {r['interval_measured_s']:>11.2f} {r['symptom_to_rollback_completed_s']:>21.2f} "
            f"{ratio:>6.2f} {r['samples_after_symptom']:>13}  {r['symptom']}"
        )
    worst, median = max(ratios), statistics.median(ratios)
    all_rolled = all(r["rolled_back"] for r in rows)
    print(
        f"median ratio {median:.2f}, worst {worst:.2f} (budget <= {BUDGET}): "
        f"{'met' if worst <= BUDGET and all_rolled else 'MISSED'}; every trial rolled back: {all_rolled}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
