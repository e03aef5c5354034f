"""A real Prometheus for tests: Debian ``prometheus`` on loopback, 1 s scrape and evaluation.

Targets come from ``file_sd_configs`` (``<workdir>/targets/*.json``, re-read on change), so tests can
add and remove scrape targets at run time without restarting Prometheus. Each target group carries
its own ``job`` label, which Prometheus keeps (it only fills ``job`` in when the target has none).

``start_metrics_stack`` is the usual shape: a stable and a canary ``MetricsApp`` under one job,
scraped by one Prometheus, returned once the first samples of both have arrived.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.harness import HarnessError, ManagedProcess, free_port, wait_until
from tests.harness.metrics_app import MetricsApp

PROMETHEUS_BIN = "/usr/bin/prometheus"


@dataclass
class PrometheusServer:
    """``prometheus`` on ``127.0.0.1:<port>`` with its TSDB and config under ``workdir``."""

    workdir: Path
    port: int = 0
    scrape_interval: str = "1s"
    process: ManagedProcess | None = None
    _targets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9090``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_dir(self) -> Path:
        """Where the file service discovery reads ``*.json`` target groups."""
        return self.workdir / "targets"

    def config_yaml(self) -> str:
        """The Prometheus configuration this server runs with."""
        return (
            "\n".join(
                [
                    "global:",
                    f"  scrape_interval: {self.scrape_interval}",
                    f"  evaluation_interval: {self.scrape_interval}",
                    f"  scrape_timeout: {self.scrape_interval}",
                    "scrape_configs:",
                    "  - job_name: harness",
                    "    file_sd_configs:",
                    "      - files:",
                    f"          - {self.targets_dir}/*.json",
                    "        refresh_interval: 1s",
                ]
            )
            + "\n"
        )

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Write the config, start Prometheus in its own process group, wait for ``/-/ready``."""
        if not Path(PROMETHEUS_BIN).exists():
            raise HarnessError(f"{PROMETHEUS_BIN} not found: run scripts/bootstrap --test-deps")
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config_yaml())
        self.process = ManagedProcess(
            [
                PROMETHEUS_BIN,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            log_path=self.workdir / "prometheus.log",
            cwd=self.workdir,
        )
        process = self.process

        def ready() -> bool:
            process.check_alive("prometheus")
            return httpx.get(self.url + "/-/ready", timeout=1.0).status_code == 200

        try:
            wait_until(ready, timeout=timeout, what=f"prometheus at {self.url}/-/ready")
        except HarnessError as exc:
            self.stop()
            raise HarnessError(f"{exc}\n{process.log_tail()}") from exc
        return self

    def stop(self) -> None:
        """Stop the Prometheus process group; idempotent."""
        if self.process is not None:
            self.process.stop()

    # -- targets -----------------------------------------------------------------------------------

    def add_target(self, address: str, *, job: str, labels: dict[str, str] | None = None) -> None:
        """Scrape ``address`` (``host:port``, path ``/metrics``) under ``job`` from the next refresh."""
        group = {"targets": [address], "labels": {"job": job, **(labels or {})}}
        self._targets.setdefault(job, []).append(group)
        self._write_targets(job)

    def remove_target(self, address: str, *, job: str) -> None:
        """Stop scraping ``address`` under ``job``."""
        self._targets[job] = [g for g in self._targets.get(job, []) if address not in g["targets"]]
        self._write_targets(job)

    def _write_targets(self, job: str) -> None:
        path = self.targets_dir / f"{job}.json"
        tmp = self.targets_dir / f".{job}.json.tmp"
        tmp.write_text(json.dumps(self._targets.get(job, [])))
        os.replace(tmp, path)  # atomic: Prometheus never reads half a file

    def scrape(self, app: MetricsApp, *, job: str, timeout: float = 20.0) -> None:
        """Add ``app`` as a target under ``job`` and wait until its first samples are queryable."""
        app.job = job
        self.add_target(app.address, job=job)
        # Two scrapes in, so rate() over a short window already has an answer.
        self.wait_for_samples(
            f'rate(http_requests_total{{job="{job}",track="{app.track}"}}[10s])', timeout=timeout
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Raw instant-query result list (harness use; the adapter is what tests test)."""
        response = httpx.get(self.url + "/api/v1/query", params={"query": promql}, timeout=5.0)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def wait_for_samples(self, promql: str, *, timeout: float = 20.0, count: int = 1) -> None:
        """Wait until ``promql`` returns at least ``count`` series."""
        try:
            wait_until(
                lambda: len(self.query(promql)) >= count,
                timeout=timeout,
                interval=0.25,
                what=f"samples for {promql} in prometheus at {self.url}",
            )
        except HarnessError as exc:
            tail = self.process.log_tail() if self.process else ""
            raise HarnessError(f"{exc}\n{tail}") from exc


def start_prometheus(workdir: Path, *, port: int = 0) -> PrometheusServer:
    """Start Prometheus with no targets yet and return it ready."""
    attempts = 1 if port else 3  # a free port can be taken by someone else before the child binds it
    for attempt in range(attempts):
        try:
            return PrometheusServer(workdir=workdir, port=port).start()
        except HarnessError as exc:
            if attempt == attempts - 1 or "address already in use" not in str(exc):
                raise
    raise AssertionError("unreachable")


@dataclass
class MetricsStack:
    """One Prometheus scraping a stable and a canary ``MetricsApp`` under ``job``."""

    prometheus: PrometheusServer
    stable: MetricsApp
    canary: MetricsApp
    job: str

    @property
    def apps(self) -> dict[str, MetricsApp]:
        """Track name -> app."""
        return {"stable": self.stable, "canary": self.canary}

    def selector(self, track: str) -> str:
        """The adapter selector for one track, e.g. ``job="hello-web",track="canary"``."""
        return f'job="{self.job}",track="{track}"'

    def stop(self) -> None:
        """Stop Prometheus and both apps."""
        self.prometheus.stop()
        self.stable.stop()
        self.canary.stop()


def start_metrics_stack(
    workdir: Path,
    *,
    port: int = 0,
    job: str = "hello-web",
    stable: dict[str, float] | None = None,
    canary: dict[str, float] | None = None,
) -> MetricsStack:
    """Start stable and canary apps (with the given initial state) and a Prometheus scraping both."""
    stable_app, canary_app = MetricsApp("stable"), MetricsApp("canary")
    stable_app.set(**(stable or {}))
    canary_app.set(**(canary or {}))
    stable_app.start()
    canary_app.start()
    try:
        prometheus = start_prometheus(workdir, port=port)
    except BaseException:
        stable_app.stop()
        canary_app.stop()
        raise
    stack = MetricsStack(prometheus=prometheus, stable=stable_app, canary=canary_app, job=job)
    try:
        prometheus.add_target(stable_app.address, job=job)
        prometheus.add_target(canary_app.address, job=job)
        prometheus.wait_for_samples(
            f'count by (track) (rate(http_requests_total{{job="{job}"}}[10s]))', count=2
        )
    except BaseException:
        stack.stop()
        raise
    return stack
