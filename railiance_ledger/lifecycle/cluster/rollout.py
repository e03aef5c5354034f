"""Waiting for a rollout: the canary's pods (``await_pods``), a Deployment on an image
(``await_rollout``), and the live-vs-rendered comparison (``compare_live``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from railiance_ledger.errors import (
    AdapterError,
)
from railiance_ledger.lifecycle.cluster.objects import api_version_of, subset_mismatches

if TYPE_CHECKING:
    from railiance_ledger.ports import KubePort


def await_pods(
    kube: KubePort,
    namespace: str,
    selector: str,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> str:
    """Wait until the canary's pods exist and are all ready, one is crash-looping, or ``timeout``.

    Returns the pod summary text for the evidence. Never raises for the pods' state: a canary that
    is not ready is for the observation to judge (and roll back); only adapter errors propagate.
    """
    deadline = clock() + timeout
    while True:
        summary = kube.pod_summary(namespace=namespace, selector=selector)
        text = (
            f"{summary.ready}/{summary.total} ready, {summary.restarts_max} restarts, "
            f"{summary.pending} pending, {summary.crashlooping} crash-looping"
        )
        if summary.total > 0 and (summary.ready == summary.total or summary.crashlooping):
            return text
        if clock() >= deadline:
            return f"{text} after {timeout:g}s"
        sleep(0.2)


def compare_live(kube: KubePort, docs: Sequence[Mapping[str, Any]], namespace: str) -> list[str]:
    """Mismatches between the rendered ``docs`` and the live objects (``spec``/``data`` and labels)."""
    problems: list[str] = []
    for doc in docs:
        kind, name = str(doc.get("kind")), str((doc.get("metadata") or {}).get("name"))
        live = kube.get(api_version=api_version_of(doc), kind=kind, namespace=namespace, name=name)
        if live is None:
            problems.append(f"{kind}/{name} is missing")
            continue
        for key in ("spec", "data", "stringData"):
            if key in doc:
                problems += [
                    f"{kind}/{name}{m}" for m in subset_mismatches(doc[key], live.get(key), f".{key}")
                ]
        labels = (doc.get("metadata") or {}).get("labels") or {}
        problems += [
            f"{kind}/{name}{m}"
            for m in subset_mismatches(
                labels, (live.get("metadata") or {}).get("labels") or {}, ".metadata.labels"
            )
        ]
    return problems


def await_rollout(
    *,
    kube: KubePort,
    namespace: str,
    deployment: str,
    image: str | None,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll: float = 0.2,
) -> tuple[bool, str]:
    """Wait until the Deployment's wanted replicas are ready and every live pod runs ``image``.

    Returns ``(ok, detail)``; on timeout ``detail`` says what was last seen. A Deployment that
    cannot be read fails (technical failures fail closed).
    """
    deadline = clock() + timeout
    detail = "not checked"
    while True:
        try:
            dep = kube.get(api_version="apps/v1", kind="Deployment", namespace=namespace, name=deployment)
        except AdapterError as exc:
            return False, f"Deployment {namespace}/{deployment} could not be read: {exc.reason}"
        if dep is None:
            detail = f"Deployment {namespace}/{deployment} not found"
        else:
            spec = dep.get("spec") or {}
            want = int(spec.get("replicas", 1) or 0)
            images = [
                str(c.get("image"))
                for c in (((spec.get("template") or {}).get("spec") or {}).get("containers") or [])
            ]
            labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            pods = [
                p
                for p in kube.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=selector)
                if not (p.get("metadata") or {}).get("deletionTimestamp")
            ]
            ready = [
                p
                for p in pods
                if any(
                    c.get("type") == "Ready" and str(c.get("status")) == "True"
                    for c in (p.get("status") or {}).get("conditions") or []
                )
            ]
            pod_images = sorted(
                {str(c.get("image")) for p in pods for c in (p.get("spec") or {}).get("containers") or []}
            )
            wrong_template = image is not None and image not in images
            stale = image is not None and any(i != image for i in pod_images)
            detail = (
                f"Deployment {deployment}: template image {', '.join(images) or '?'}; {len(ready)}/{want} "
                "ready; "
                f"pod images {', '.join(pod_images) or 'none'}"
            )
            if not wrong_template and not stale and len(ready) >= want and len(pods) == want:
                return True, detail
        if clock() >= deadline:
            return False, f"timed out after {timeout:g}s: {detail}"
        sleep(poll)
