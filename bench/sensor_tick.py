#!/usr/bin/env python
"""New-digest sensor budget (ARCHITECTURE.md "Budgets": a tick for 500 workloads under 5 s against a
real registry), with a baseline measured in the same run, and the push-to-run latency under dagster dev.

1. Declare W workloads (copies of examples/hello-web, each watching its own repository) and push one
   image per workload (tag v1.0.0, plus a tag the pattern ignores) to a real docker-registry.
2. Baseline: W raw sequential ``GET /v2/<repo>/tags/list`` calls on one httpx client (the least any
   poll must do: one round trip per workload).
3. ``new_digest_sensor`` ticks, evaluated with ``build_sensor_context(instance, definitions)``: the
   first tick (registers W candidates, W Stage 1 run requests) and steady-state ticks with the
   cursor (nothing new: the cost paid every interval). Budget: steady tick < 5 s.
4. Latency from a pushed digest to the requested Stage 1 run under ``dagster dev -w workspace.yaml``,
   over a few pushes, two ways: polling (``new_digest_sensor``, interval 1 s) and push notifications
   (a second registry whose ``notifications.endpoints`` point at ``railiance webhook serve``, read by
   ``registry_push_sensor``). Budget for notifications: median < 1 s, worst < 3 s.

Usage: python bench/sensor_tick.py [--workloads 500] [--ticks 3] [--pushes 3] [--no-dev] [--no-notify]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx

BUDGET_S = 5.0
NOTIFY_MEDIAN_BUDGET_S = 1.0
NOTIFY_WORST_BUDGET_S = 3.0
WEBHOOK_SECRET = "bench-" + "5e" * 16


def declare(apps: Path, count: int) -> list[tuple[str, str]]:
    """``count`` workload directories under ``apps`` (app.toml renamed, own repository); (name, repo path)."""
    example = ROOT / "examples" / "hello-web"
    template = (example / "railiance" / "app.toml").read_text()
    out = []
    for i in range(count):
        name, repo = f"bench-{i:04d}", f"bench/w{i:04d}"
        app = apps / name
        shutil.copytree(example, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        text = re.sub(r'^name = "hello-web"', f'name = "{name}"', template, count=1, flags=re.MULTILINE)
        text = re.sub(
            r'^repository = "[^"]*"',
            f'repository = "registry.local/{repo}"',
            text,
            count=1,
            flags=re.MULTILINE,
        )
        (app / "railiance" / "app.toml").write_text(text)
        out.append((name, repo))
    return out


def push_all(registry_url: str, repos: list[str]) -> None:
    """One matching tag (v1.0.0) and one ignored tag (latest) per repository, pushed concurrently."""
    from tests.harness.registry import RegistryHelper

    helper = RegistryHelper(registry_url)
    try:

        def push(repo: str) -> None:
            for attempt in range(3):  # a loaded machine occasionally drops a pooled connection
                try:
                    digest = helper.push_image(repo, "v1.0.0")
                    helper.move_tag(repo, "latest", digest)
                    return
                except httpx.TransportError:
                    if attempt == 2:
                        raise

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(push, repos))
    finally:
        helper.close()


def baseline(registry_url: str, repos: list[str]) -> float:
    """Seconds for one raw sequential tags/list call per repository."""
    with httpx.Client(base_url=registry_url, timeout=10.0, trust_env=False) as client:
        client.get(f"/v2/{repos[0]}/tags/list").raise_for_status()  # warm the connection
        t0 = time.perf_counter()
        for repo in repos:
            client.get(f"/v2/{repo}/tags/list").raise_for_status()
        return time.perf_counter() - t0


def sensor_ticks(
    apps: Path, registry_url: str, ledger_url: str, ticks: int
) -> tuple[float, int, list[float]]:
    """(first tick seconds, run requests of the first tick, steady tick seconds)."""
    from dagster import SensorResult, build_sensor_context, instance_for_test

    from assets.resources import AppsResource, LedgerResource, RegistryResource
    from definitions import build_definitions
    from sensors import new_digest_sensor

    resources = {
        "ledger": LedgerResource(url=ledger_url),
        "apps": AppsResource(apps_dir=str(apps)),
        "registry": RegistryResource(url=registry_url),
    }
    defs = build_definitions(resources)
    logging.getLogger("dagster").setLevel(logging.WARNING)  # one INFO line per registration otherwise
    home = Path(tempfile.mkdtemp(prefix="bench-dagster-"))
    with instance_for_test(temp_dir=str(home)) as instance:

        def tick(cursor: str | None) -> Any:
            ctx = build_sensor_context(
                instance=instance, definitions=defs, resources=resources, cursor=cursor
            )
            result = new_digest_sensor(ctx)
            if isinstance(result, SensorResult):
                for req in result.dynamic_partitions_requests or []:
                    instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            return result

        t0 = time.perf_counter()
        first = tick(None)
        first_s = time.perf_counter() - t0
        if not isinstance(first, SensorResult):
            raise SystemExit(f"first tick did not evaluate: {first}")
        steady = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            again = tick(first.cursor)
            steady.append(time.perf_counter() - t0)
            assert not getattr(again, "run_requests", None), "a steady tick must request nothing"
    shutil.rmtree(home, ignore_errors=True)
    return first_s, len(first.run_requests), steady


def dev_latency(
    work: Path,
    registry_url: str,
    pushes: int,
    *,
    spool: Path | None = None,
    tag: str = "poll",
    on_ready: Any = None,
) -> list[float]:
    """Seconds from a completed push to a Stage 1 run existing for it, under dagster dev: polling
    (interval 1 s), or with ``spool`` the push sensor reading what the webhook receiver stored."""
    from railiance_ledger.ledger.projections import partition_key
    from tests.fixtures.dagster import make_app, start_dagster_dev
    from tests.harness.registry import RegistryHelper

    dev_work = work / f"dev-{tag}"
    dev_work.mkdir()
    apps = dev_work / "apps"
    apps.mkdir()
    repo = f"bench/latency-{os.getpid()}"
    make_app(apps, name="latency-web", repository=repo)
    env = {
        "RAILIANCE_LEDGER_URL": f"sqlite:///{dev_work / 'dev-ledger.db'}",
        "RAILIANCE_APPS_DIR": str(apps),
        "RAILIANCE_REGISTRY_URL": registry_url,
        "RAILIANCE_HOME": str(dev_work / "home"),
        "RAILIANCE_DAGSTER_SENSORS": "registry_push_sensor" if spool else "new_digest_sensor",
        "RAILIANCE_SENSOR_INTERVAL": "1",
    }
    if spool is not None:
        env["RAILIANCE_WEBHOOK_SPOOL"] = str(spool)
    dev = start_dagster_dev(dev_work, env)
    stop_receiver = on_ready(dev, env) if on_ready is not None else None
    helper = RegistryHelper(registry_url)
    query = """query Runs($key: String!) {
                 runsOrError(filter: {tags: [{key: "dagster/partition", value: $key}]}) {
                 ... on Runs { results { runId } } } }"""
    out = []
    try:
        time.sleep(3)  # let the sensor take its first (empty) tick
        for _ in range(pushes):
            digest = helper.move_tag(repo, "v1.0.0")  # a new image under the watched tag
            t0 = time.perf_counter()
            key = partition_key("latency-web", digest)
            while not dev.graphql(query, {"key": key})["runsOrError"]["results"]:
                if time.perf_counter() - t0 > 60:
                    raise SystemExit(f"no run for {key} after 60 s; log:\n{dev.log_text()[-3000:]}")
                time.sleep(0.1)
            out.append(time.perf_counter() - t0)
            time.sleep(2)
    finally:
        helper.close()
        if stop_receiver is not None:
            stop_receiver()
        dev.stop()
    return out


def notify_latency(work: Path, pushes: int) -> list[float]:
    """A registry notifying ``railiance webhook serve`` (a process, with the fast path pointed at the
    dagster dev webserver); push -> Stage 1 run under dagster dev (registry_push_sensor also running)."""
    import subprocess

    from tests.harness import free_port, wait_until
    from tests.harness.registry import start_registry

    port = free_port()
    spool = work / "notify-spool.db"
    registry = start_registry(
        work / "notify-registry",
        notify_url=f"http://127.0.0.1:{port}/registry/events",
        notify_secret=WEBHOOK_SECRET,
    )

    def start_receiver(dev: Any, env: dict[str, str]) -> Any:
        receiver = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "railiance"),
                "webhook",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--spool",
                str(spool),
            ],
            env={
                **os.environ,
                **env,
                "RAILIANCE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "RAILIANCE_DAGSTER_URL": dev.url,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200,
            timeout=30,
            what="webhook receiver",
        )

        def stop() -> None:
            receiver.terminate()
            try:
                receiver.wait(timeout=10)
            except subprocess.TimeoutExpired:  # SIGTERM inherited as ignored from a Dagster-using parent
                receiver.kill()
                receiver.wait(timeout=10)

        return stop

    try:
        return dev_latency(work, registry.url, pushes, spool=spool, tag="notify", on_ready=start_receiver)
    finally:
        registry.stop()


def describe(samples: list[float]) -> str:
    """``median X s, worst Y s (a, b, ...)``."""
    return (
        f"median {statistics.median(samples):.2f} s, worst {max(samples):.2f} s "
        f"({', '.join(f'{s:.2f}' for s in samples)})"
    )


def main() -> int:
    """Run the measurements and print them with the baseline and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=500)
    parser.add_argument("--ticks", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=3)
    parser.add_argument("--no-dev", action="store_true", help="skip the dagster dev latency measurement")
    parser.add_argument("--no-notify", action="store_true", help="skip the push-notification latency")
    args = parser.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    from tests.harness.registry import start_registry

    work = Path(tempfile.mkdtemp(prefix="bench-sensor-"))
    registry = start_registry(work / "registry")
    try:
        print(
            f"machine: {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}, "
            f"registry docker-registry at {registry.url}"
        )
        apps = work / "apps"
        apps.mkdir()
        t0 = time.perf_counter()
        declared = declare(apps, args.workloads)
        repos = [r for _, r in declared]
        push_all(registry.url, repos)
        print(
            f"setup: {len(declared)} workloads declared, {2 * len(repos)} tags pushed in "
            f"{time.perf_counter() - t0:.1f} s"
        )

        base = baseline(registry.url, repos)
        first_s, requested, steady = sensor_ticks(
            apps, registry.url, f"sqlite:///{work / 'ledger.db'}", args.ticks
        )
        med = statistics.median(steady)
        print(f"baseline: {len(repos)} sequential tags/list calls: {base:.2f} s")
        print(
            f"first tick ({requested} new digests registered, {requested} Stage 1 runs requested): "
            f"{first_s:.2f} s "
            f"(ratio {first_s / base:.2f} x baseline)"
        )
        print(
            "steady tick (cursor, nothing new; tags/list + HEAD per matching tag for "
            f"{len(repos)} workloads): "
            f"median {med:.2f} s of {', '.join(f'{s:.2f}' for s in steady)} "
            f"(ratio {med / base:.2f} x baseline); "
            f"budget < {BUDGET_S:.0f} s: {'OK' if med < BUDGET_S else 'OVER'}"
        )
        if not args.no_dev:
            lat = dev_latency(work, registry.url, args.pushes)
            print(
                f"dagster dev, polling (new_digest_sensor, interval 1 s): push -> Stage 1 run requested: {describe(lat)}"
            )
            if not args.no_notify:
                note = notify_latency(work, args.pushes)
                ok = statistics.median(note) < NOTIFY_MEDIAN_BUDGET_S and max(note) < NOTIFY_WORST_BUDGET_S
                print(
                    "dagster dev, notifications (registry -> railiance webhook serve -> registry_push_sensor): "
                    f"push -> Stage 1 run requested: {describe(note)}; budget median < "
                    f"{NOTIFY_MEDIAN_BUDGET_S:.0f} s, worst < {NOTIFY_WORST_BUDGET_S:.0f} s: {'OK' if ok else 'OVER'}"
                )
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
