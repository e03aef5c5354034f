"""Budget: `railiance status` costs at most 1.3x a bare `python -c "import sqlalchemy, pydantic, httpx"`.

Both commands run as fresh processes on the same machine, interleaved, so machine noise hits both
alike; the figure is the ratio of medians. The ledger holds a realistic workload history (a few
hundred candidates with Stage 1 results, approvals and promotions) so `status` does real work.

    .venv/bin/python bench/cli_status.py [--runs 21] [--candidates 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.ledger.store import EventStore

BUDGET = 1.3


def _doc(digest: str, stage: int) -> dict[str, object]:
    return {
        "schema": "railiance.stage-result/v1",
        "workload": {"name": "bench-web", "repo": "bench/web"},
        "stage": stage,
        "candidate": {"digest": digest, "image": f"registry.local/bench/web@{digest}"},
        "status": "pass",
        "checks": [{"name": f"check_{i}", "status": "pass", "reason": "ok"} for i in range(8)],
    }


def build_ledger(url: str, candidates: int) -> int:
    """A workload with ``candidates`` candidates, each registered and through Stage 1 and 2."""
    store = EventStore.open(url)
    for i in range(candidates):
        digest = f"sha256:{i:064x}"
        batch = [
            NewEvent(
                stream="bench-web",
                kind=EventKind.CANDIDATE_REGISTERED,
                actor="bench",
                candidate=digest,
                payload={"image": f"registry.local/bench/web@{digest}", "digest": digest},
            ),
            NewEvent(
                stream="bench-web", kind=EventKind.STAGE_STARTED, actor="bench", candidate=digest, stage=1
            ),
            NewEvent(
                stream="bench-web",
                kind=EventKind.STAGE_COMPLETED,
                actor="bench",
                candidate=digest,
                stage=1,
                payload=_doc(digest, 1),
            ),
            NewEvent(
                stream="bench-web", kind=EventKind.STAGE_STARTED, actor="bench", candidate=digest, stage=2
            ),
            NewEvent(
                stream="bench-web",
                kind=EventKind.STAGE_COMPLETED,
                actor="bench",
                candidate=digest,
                stage=2,
                payload=_doc(digest, 2),
            ),
        ]
        store.append(batch)
    count = store.count()
    store.close()
    return count


def time_command(argv: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of one run of ``argv`` (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--candidates", type=int, default=300)
    args = parser.parse_args()

    python = sys.executable
    railiance = str(Path(python).with_name("railiance"))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/ledger.db"
        events = build_ledger(url, args.candidates)
        env = {**os.environ, "RAILIANCE_LEDGER_URL": url, "RAILIANCE_HOME": tmp}
        baseline_cmd = [python, "-c", "import sqlalchemy, pydantic, httpx"]
        status_cmd = [railiance, "status", "bench-web", "--json"]
        time_command(baseline_cmd, env)  # warm the page cache for both
        time_command(status_cmd, env)
        base: list[float] = []
        status: list[float] = []
        for _ in range(args.runs):
            base.append(time_command(baseline_cmd, env))
            status.append(time_command(status_cmd, env))
    b, s = statistics.median(base), statistics.median(status)
    ratio = s / b
    print(f"ledger: {events} events, {args.candidates} candidates; {args.runs} interleaved runs each")
    print(f"baseline  python -c 'import sqlalchemy, pydantic, httpx'  median {b * 1000:7.1f} ms")
    print(f"railiance status bench-web --json                       median {s * 1000:7.1f} ms")
    print(f"ratio {ratio:.2f}x (budget <= {BUDGET}x): {'met' if ratio <= BUDGET else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
