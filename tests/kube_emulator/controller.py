"""A small controller thread: Deployments -> ReplicaSets -> Pods, pod status from the behaviour registry,
Deployment and ReplicaSet status, and a few events, the way kube-controller-manager and a kubelet would."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from tests.kube_emulator.behaviour import BehaviourRegistry, PodMode
from tests.kube_emulator.discovery import ResourceType
from tests.kube_emulator.handlers import Api, ApiError, now

Obj = dict[str, Any]
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
REVISION = "deployment.kubernetes.io/revision"
log = logging.getLogger(__name__)


def template_hash(template: Obj) -> str:
    """The ``pod-template-hash`` of a pod template (stable for equal templates)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:10])


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller(threading.Thread):
    """Reconciles every ``tick`` seconds until ``stopping`` is set."""

    def __init__(
        self, api: Api, behaviours: BehaviourRegistry, stopping: threading.Event, tick: float = 0.05
    ) -> None:
        super().__init__(name="kube-emulator-controller", daemon=True)
        self.api, self.behaviours, self.stopping, self.tick = api, behaviours, stopping, tick
        self.store = api.store
        self._born: dict[str, float] = {}
        self._progress: dict[str, tuple[str, float]] = {}
        self._evented: set[tuple[str, str]] = set()

    def _rt(self, plural: str) -> ResourceType:
        rt = next((t for t in self.api.discovery.types() if t.plural == plural), None)
        assert rt is not None
        return rt

    def run(self) -> None:
        """Reconcile until stopped; a failing pass is logged and retried."""
        while not self.stopping.wait(self.tick):
            try:
                self.reconcile()
            except Exception:  # pragma: no cover - keep the thread alive, show what broke
                log.exception("kube emulator controller pass failed")

    def reconcile(self) -> None:
        """One pass over deployments, replicasets and pods."""
        deps, rss = self._rt("deployments"), self._rt("replicasets")
        for d in self.store.list(deps)[0]:
            self._deployment(d)
        for rs in self.store.list(rss)[0]:
            self._replicaset(rs)
        for pod in self.store.list(self._rt("pods"))[0]:
            self._pod(pod)
        for rs in self.store.list(rss)[0]:
            self._workload_status(rss, rs, None)
        for d in self.store.list(deps)[0]:
            self._workload_status(deps, d, self._current_rs_name(d))

    # --- deployments and replicasets ------------------------------------------------------------

    def _owned(self, plural: str, owner: Obj) -> list[Obj]:
        items = self.store.list(self._rt(plural), owner["metadata"]["namespace"])[0]
        return [
            o
            for o in items
            if any(
                r.get("uid") == owner["metadata"]["uid"] for r in o["metadata"].get("ownerReferences") or []
            )
        ]

    def _current_rs_name(self, d: Obj) -> str:
        return f"{d['metadata']['name']}-{template_hash(d['spec']['template'])}"

    @staticmethod
    def _owner_ref(owner: Obj) -> Obj:
        return {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _deployment(self, d: Obj) -> None:
        rss = self._rt("replicasets")
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        phash = template_hash(d["spec"]["template"])
        current = f"{name}-{phash}"
        owned = self._owned("replicasets", d)
        revision = 1 + max(
            (int(r["metadata"].get("annotations", {}).get(REVISION, "0")) for r in owned), default=0
        )
        replicas = d["spec"].get("replicas", 1)
        if not any(r["metadata"]["name"] == current for r in owned):
            template = copy.deepcopy(d["spec"]["template"])
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = phash
            selector = copy.deepcopy(d["spec"]["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = phash
            rs = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": current,
                    "namespace": ns,
                    "labels": template["metadata"]["labels"],
                    "annotations": {REVISION: str(revision)},
                    "ownerReferences": [self._owner_ref(d)],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": template},
            }
            try:
                self.api.create_internal(rss, rs)
            except ApiError as err:
                log.warning("controller could not create replicaset %s: %s", current, err)
                return
            self._event(
                d, "ScalingReplicaSet", f"Scaled up replica set {current} from 0 to {replicas}", key=current
            )
        for rs in owned:
            want = replicas if rs["metadata"]["name"] == current else 0
            annotations = rs["metadata"].get("annotations", {})
            bump = rs["metadata"]["name"] == current and int(annotations.get(REVISION, "0")) < revision - 1
            if rs["spec"].get("replicas") != want or bump:
                with self.store.lock:
                    cur = self.store.get(rss, ns, rs["metadata"]["name"])
                    if cur is not None:
                        cur["spec"]["replicas"] = want
                        if bump:
                            cur["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
                        self.api.write(rss, cur, self.store.get(rss, ns, rs["metadata"]["name"]))

    def _replicaset(self, rs: Obj) -> None:
        pods_rt = self._rt("pods")
        pods = self._owned("pods", rs)
        want = rs["spec"].get("replicas", 1)
        for pod in pods[want:]:
            self.api.delete(pods_rt, pod["metadata"]["namespace"], pod["metadata"]["name"])
        for _ in range(want - len(pods)):
            template = copy.deepcopy(rs["spec"]["template"])
            meta = template.get("metadata") or {}
            name = f"{rs['metadata']['name']}-{''.join(random.choices(ALPHABET, k=5))}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": rs["metadata"]["namespace"],
                    "generateName": rs["metadata"]["name"] + "-",
                    "labels": meta.get("labels") or {},
                    "annotations": meta.get("annotations") or {},
                    "ownerReferences": [self._owner_ref(rs)],
                },
                "spec": template["spec"],
            }
            if not pod["metadata"]["annotations"]:
                del pod["metadata"]["annotations"]
            self.api.create_internal(pods_rt, pod)

    # --- pods ------------------------------------------------------------------------------------

    def _pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        born = self._born.setdefault(uid, time.time())
        behaviour = self.behaviours.for_pod(pod)
        age = time.time() - born
        started = _stamp(born)
        containers = pod["spec"].get("containers") or []
        status: Obj = {"phase": "Pending", "qosClass": "BestEffort", "startTime": started}

        def cond(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
            c: Obj = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": started,
            }
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        if behaviour.mode is PodMode.PENDING:
            msg = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available."
            status["conditions"] = [cond("PodScheduled", False, "Unschedulable", msg)]
            del status["startTime"]
            self._event(pod, "FailedScheduling", msg, "Warning")
        else:
            ready = behaviour.mode is PodMode.READY and age >= behaviour.ready_after
            restarts = int(age / behaviour.restart_interval) if behaviour.mode is PodMode.CRASHLOOP else 0
            status.update(phase="Running", hostIP="10.0.0.10", podIP=f"10.244.0.{int(uid[:2], 16) % 250 + 2}")
            status["podIPs"] = [{"ip": status["podIP"]}]
            status["conditions"] = [
                cond("Initialized", True),
                cond("Ready", ready),
                cond("ContainersReady", ready),
                cond("PodScheduled", True),
            ]
            statuses = []
            for c in containers:
                cs: Obj = {
                    "name": c.get("name"),
                    "image": c.get("image"),
                    "imageID": f"docker.io/{c.get('image')}",
                    "containerID": f"containerd://{uid.replace('-', '')}",
                    "ready": ready,
                    "restartCount": restarts,
                    "started": behaviour.mode is PodMode.READY,
                    "state": {"running": {"startedAt": started}},
                }
                if behaviour.mode is PodMode.CRASHLOOP:
                    cs["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": (
                                f"back-off 10s restarting failed container={c.get('name')} pod={pod['metadata']['name']}"
                            ),
                        }
                    }
                    if restarts:
                        cs["lastState"] = {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "startedAt": started,
                                "finishedAt": started,
                                "containerID": cs["containerID"],
                            }
                        }
                statuses.append(cs)
            status["containerStatuses"] = statuses
            if behaviour.mode is PodMode.CRASHLOOP and restarts:
                self._event(pod, "BackOff", "Back-off restarting failed container", "Warning")
        if pod.get("status") != status:
            self._set_status(self._rt("pods"), pod, status)

    def _set_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        with self.store.lock:
            cur = self.store.get(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if cur is not None and cur["metadata"]["uid"] == obj["metadata"]["uid"]:
                cur["status"] = status
                self.store.put(rt, cur)

    def _workload_status(self, rt: ResourceType, obj: Obj, current_rs: str | None) -> None:
        if current_rs is None:
            pods = self._owned("pods", obj)
            updated = pods
        else:
            rs_list = self._owned("replicasets", obj)
            pods = [p for rs in rs_list for p in self._owned("pods", rs)]
            updated = [p for p in pods if p["metadata"]["name"].startswith(current_rs + "-")]
        ready = sum(
            1
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        desired = obj["spec"].get("replicas", 1)
        status: Obj = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if current_rs is None:
            status["fullyLabeledReplicas"] = len(pods)
        else:
            status["updatedReplicas"] = len(updated)
            if desired - ready > 0:
                status["unavailableReplicas"] = desired - ready
            status["conditions"] = self._conditions(obj, current_rs, desired, len(pods), len(updated), ready)
        for k in ("readyReplicas", "availableReplicas", "updatedReplicas"):
            if status.get(k) == 0:
                del status[k]
        if obj.get("status") != status:
            self._set_status(rt, obj, status)

    def _conditions(self, d: Obj, rs: str, desired: int, total: int, updated: int, ready: int) -> list[Obj]:
        old = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        uid = d["metadata"]["uid"]
        key = json.dumps(d["spec"]["template"], sort_keys=True) + str(desired)
        if self._progress.get(uid, ("", 0.0))[0] != key:
            self._progress[uid] = (key, time.time())
        stalled = time.time() - self._progress[uid][1] > d["spec"].get("progressDeadlineSeconds", 600)
        complete = updated == desired and ready >= desired and total == desired

        def cond(kind: str, ok: bool, reason: str, message: str) -> Obj:
            prev = old.get(kind) or {}
            same = prev.get("status") == ("True" if ok else "False")
            return {
                "type": kind,
                "status": "True" if ok else "False",
                "lastUpdateTime": prev["lastUpdateTime"] if same and prev.get("reason") == reason else now(),
                "lastTransitionTime": prev["lastTransitionTime"] if same else now(),
                "reason": reason,
                "message": message,
            }

        available = cond(
            "Available",
            ready >= desired,
            "MinimumReplicasAvailable" if ready >= desired else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if ready >= desired
            else "Deployment does not have minimum availability.",
        )
        if complete:
            progressing = cond(
                "Progressing",
                True,
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs}" has successfully progressed.',
            )
        elif stalled:
            progressing = cond(
                "Progressing",
                False,
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs}" has timed out progressing.',
            )
        else:
            progressing = cond("Progressing", True, "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.')
        return [available, progressing]

    def _event(self, obj: Obj, reason: str, message: str, kind: str = "Normal", key: str = "") -> None:
        meta = obj["metadata"]
        if (meta["uid"] + key, reason) in self._evented:
            return
        self._evented.add((meta["uid"] + key, reason))
        stamp = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{random.getrandbits(64):016x}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "emulator-controller"},
            "reportingComponent": "emulator-controller",
            "reportingInstance": "",
        }
        try:
            self.api.create_internal(self._rt("events"), event)
        except ApiError:
            pass

    def forget(self) -> None:
        """Drop per-object memory (used by the emulator's reset)."""
        self._born.clear()
        self._progress.clear()
        self._evented.clear()
