"""Verifying a restore: rollout, live objects against the stored manifests, routing, the check."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.cluster.manifests import load_manifests
from railiance_ledger.lifecycle.cluster.objects import deployment_of, split_docs
from railiance_ledger.lifecycle.cluster.probes import run_check
from railiance_ledger.lifecycle.cluster.rollout import await_rollout, compare_live
from railiance_ledger.lifecycle.cluster.routing import routing_read_back
from railiance_ledger.lifecycle.rollback.model import RestoreTarget

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ports import KubePort


def verify_restored(
    *,
    decl: Declaration,
    kube: KubePort,
    http: httpx.Client,
    target: RestoreTarget,
    strategy: str,
    home: Path | None,
    timeout: float,
    sleep: Callable[[float], None],
    routing: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The rollback verification: rollout of the target, live objects vs its manifests, the declared check.

    For the ``routing`` strategy the stored manifests are not compared (the target's release was
    never changed); instead the re-applied ``routing`` objects are read back (``routing_read_back``:
    exactly as recorded, and the stable Service selects only ready pods of the target image).
    """

    docs: list[dict[str, Any]] = []
    manifests: dict[str, Any] = {"checked": False}
    if target.manifests_sha256:
        try:
            docs = split_docs(load_manifests(target.manifests_sha256, home))
        except (OSError, InvalidInput) as exc:
            manifests = {"checked": False, "ok": False, "detail": f"stored manifests unavailable: {exc}"}
    release = target.serving_release or target.release
    name, _labels = deployment_of(docs, release)
    rollout_ok, rollout = await_rollout(
        kube=kube,
        namespace=target.namespace,
        deployment=name,
        image=target.image,
        timeout=timeout,
        sleep=sleep,
    )
    if docs and strategy != "routing":
        problems = compare_live(kube, docs, target.namespace)
        manifests = {
            "checked": True,
            "ok": not problems,
            "sha256": target.manifests_sha256,
            "objects": [f"{d.get('kind')}/{d['metadata'].get('name')}" for d in docs],
            "detail": "live objects match the stored manifests" if not problems else "; ".join(problems[:10]),
        }
    read_back: dict[str, Any] | None = None
    if strategy == "routing":
        read_back = routing_read_back(
            kube, routing, namespace=target.namespace, service=decl.routing.service, image=target.image
        )
        if not routing:
            read_back = {**read_back, "ok": False, "detail": "no routing configuration was re-applied"}
    check = run_check(
        decl=decl, kube=kube, http=http, name=decl.rollback.verification, namespace=target.namespace
    )
    ok = rollout_ok and check["ok"] and manifests.get("ok", True) is not False
    out = {"ok": ok, "rollout": {"ok": rollout_ok, "detail": rollout}, "manifests": manifests, "check": check}
    if read_back is not None:
        out["routing"] = read_back
        out["ok"] = ok and bool(read_back["ok"])
    return out
