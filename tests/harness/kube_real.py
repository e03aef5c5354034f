"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes and pod lifecycles), built by ``scripts/k8s-binaries``.

``start_control_plane(workdir)`` returns a running ``ControlPlane``; ``.stop()`` stops every process
group it started, in reverse order. Nothing here talks to anything but 127.0.0.1.

- Authentication: client certificates from a CA made here (the components and ``admin.kubeconfig``,
  group ``system:masters``) and a static bearer token (``kubeconfig``, the file tests use; a token
  passes through the fault proxy, a client certificate would not). Authorization ``Node,RBAC``;
  the default admission plugins are on (NamespaceLifecycle, ServiceAccount, LimitRanger, ...).
- Service accounts: an RSA key the apiserver signs tokens with and the controller-manager's
  token controller uses; the controller-manager runs every default controller (deployment,
  replicaset, endpointslice, serviceaccount, garbage collector, job, namespace, ...).
- Nodes: ``nodes`` fake nodes ``kwok-node-<i>`` (annotation ``kwok.x-k8s.io/node: fake``) with pod
  CIDR ``198.18.<i>.0/24``; kwok plays the Stages in ``kwok-stages.yaml`` on them (pod behaviours
  chosen by the pod annotation ``kwok.railiance.dev/behaviour``, see docs/testing.md).
- The Gateway API standard-channel CRDs are installed before ``start_control_plane`` returns.

Address plan (all inside 198.18.0.0/15, the range RFC 2544 sets aside for test networks, so no
address here can be anyone else's): pods 198.18.0.0/16 (node i: 198.18.i.0/24), Services
198.19.0.0/16. No process connects to a Service IP; pod IPs are reached only through the test
network namespace (``tests/harness/netns.py``) when a test asks for real traffic.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from tests.harness import HarnessError, ManagedProcess, free_port, wait_until
from tests.harness.faultproxy import FaultProxy
from tests.harness.gateway import TestGateway
from tests.harness.netns import TestNetwork, create_network
from tests.harness.netns import available as network_available
from tests.harness.podhost import PodSync

ROOT = Path(__file__).resolve().parents[2]
STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

POD_CIDR = "198.18.0.0/16"
SERVICE_CIDR = "198.19.0.0/16"
KUBELET_PORT = 10250  # kwok's server on the host side of the test network (logs)
PODHOST_PORT = 10000  # the pod host's control API, on the namespace side of the veth pair
CONTEXT = "railiance-test"
ADMIN_USER = "railiance-admin"


def binaries_dir() -> Path | None:
    """Where ``scripts/k8s-binaries`` put the control plane, or None when it is not built.

    ``RAILIANCE_K8S_BIN`` names a directory directly; otherwise ``scripts/k8s-binaries --print-dir``
    answers (it only prints, it never builds).
    """
    env = os.environ.get("RAILIANCE_K8S_BIN")
    if env:
        path = Path(env)
        return path if all((path / b).is_file() for b in BINARIES) else None
    script = ROOT / "scripts" / "k8s-binaries"
    proc = subprocess.run(
        [str(script), "--print-dir"], capture_output=True, text=True, check=False, timeout=30
    )
    if proc.returncode != 0:
        return None
    path = Path(proc.stdout.strip())
    return path if all((path / b).is_file() for b in BINARIES) else None


# --------------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Pki:
    """Files of the throw-away PKI: CA, apiserver serving cert, admin client cert, SA signing key."""

    ca_crt: Path
    ca_key: Path
    server_crt: Path
    server_key: Path
    admin_crt: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _make_pki(directory: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=7)

    def write_key(path: Path, key: Any) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("railiance-test-ca"))
        .issuer_name(name("railiance-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, org: str | None, *, server: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn, org))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if server:
            service_ip = ipaddress.ip_address(str(next(ipaddress.ip_network(SERVICE_CIDR).hosts())))
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(service_ip),
                    ]
                ),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    pki = Pki(
        ca_crt=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_crt=directory / "apiserver.crt",
        server_key=directory / "apiserver.key",
        admin_crt=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    pki.ca_crt.write_bytes(ca_cert.public_bytes(pem))
    write_key(pki.ca_key, ca_key)
    server_key, server_cert = leaf("kube-apiserver", None, server=True)
    pki.server_crt.write_bytes(server_cert.public_bytes(pem))
    write_key(pki.server_key, server_key)
    admin_key, admin_cert = leaf(ADMIN_USER, "system:masters", server=False)
    pki.admin_crt.write_bytes(admin_cert.public_bytes(pem))
    write_key(pki.admin_key, admin_key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_crt: Path,
    token: str | None = None,
    client_crt: Path | None = None,
    client_key: Path | None = None,
    context: str = CONTEXT,
) -> Path:
    """A kubeconfig with one cluster/user/context named ``context`` (CA and credentials inline)."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode("ascii")

    user: dict[str, str] = {}
    if token is not None:
        user["token"] = token
    if client_crt is not None and client_key is not None:
        user["client-certificate-data"] = b64(client_crt)
        user["client-key-data"] = b64(client_key)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority-data": b64(ca_crt)}}
        ],
        "users": [{"name": context, "user": user}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}
        ],
        "current-context": context,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------------------------------
# The control plane


@dataclass
class ControlPlane:
    """A running control plane. ``url`` is the apiserver (https://127.0.0.1:<port>)."""

    url: str
    workdir: Path
    bin_dir: Path
    kubeconfig_path: Path  # bearer token, context ``railiance-test``
    admin_kubeconfig_path: Path  # client certificate (what the components use)
    token: str
    pki: Pki
    nodes: list[str]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    fault_proxy: FaultProxy | None = None
    #: the test network namespace (None when this process may not make one: not root, no iproute2)
    network: TestNetwork | None = None
    #: why there is no test network (None when there is one)
    network_error: str | None = None
    pod_sync: PodSync | None = None
    _api: httpx.Client | None = None
    _gateway: TestGateway | None = None
    #: a token kubeconfig whose server is the fault proxy (context ``railiance-test``)
    proxied_kubeconfig_path: Path | None = None

    @property
    def ca_path(self) -> Path:
        """The CA that signed the apiserver's serving certificate."""
        return self.pki.ca_crt

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """An ``httpx.Client`` on the apiserver, authenticated with the bearer token."""
        return httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.pki.ca_crt)),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout,
        )

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the project's kubectl against this control plane."""
        proc = subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(self.kubeconfig_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def gateway(self) -> TestGateway:
        """The test gateway (started on first use) routing by this cluster's Ingresses and HTTPRoutes."""
        if self.network is None:
            raise HarnessError("the test gateway needs the test network (root and iproute2)")
        if self._gateway is None:
            self._gateway = TestGateway(self.client(timeout=10.0)).start()
        return self._gateway

    def set_logs(
        self, namespace: str, lines: list[str], *, pods: list[str] | None = None, container: str | None = None
    ) -> Path:
        """What ``kubectl logs`` (``pods/<name>/log``) answers for pods of ``namespace``.

        Writes ``lines`` to a file (CRI log format, as a container runtime does) and points kwok at it: with ``pods``, a ``Logs`` object per pod
        (named like the pod, so create it once the pod exists); without, a ``ClusterLogs`` for every
        pod of the namespace. ``container`` limits it to one container. Needs the test network
        (kwok's server is the nodes' kubelet); returns the file, which may be appended to.
        """
        if self.network is None:
            raise HarnessError("pod logs need the test network (root and iproute2)")
        directory = self.workdir / "pod-logs" / namespace
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / (f"{'_'.join(pods)}.log" if pods else "_namespace.log")
        # kwok reads the container runtime's (CRI) log format: "<RFC3339Nano> <stream> F <line>"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        path.write_text("".join(f"{stamp} stdout F {line}\n" for line in lines))
        spec = {"logs": [{"containers": [container] if container else [], "logsFile": str(path)}]}
        with self.client() as http:
            targets: list[tuple[str, dict[str, Any]]] = []
            if pods:
                for pod in pods:
                    targets.append(
                        (
                            f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{namespace}/logs",
                            {"kind": "Logs", "metadata": {"name": pod, "namespace": namespace}, "spec": spec},
                        )
                    )
            else:
                targets.append(
                    (
                        "/apis/kwok.x-k8s.io/v1alpha1/clusterlogs",
                        {
                            "kind": "ClusterLogs",
                            "metadata": {"name": f"ns-{namespace}"},
                            "spec": {"selector": {"matchNamespaces": [namespace]}, **spec},
                        },
                    )
                )
            for collection, obj in targets:
                obj["apiVersion"] = "kwok.x-k8s.io/v1alpha1"
                name = obj["metadata"]["name"]
                resp = http.post(collection, json=obj)
                if resp.status_code == 409:
                    current = http.get(f"{collection}/{name}").json()
                    obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    resp = http.put(f"{collection}/{name}", json=obj)
                if resp.status_code not in (200, 201):
                    raise HarnessError(f"setting logs {name}: {resp.status_code} {resp.text}")
        return path

    def set_image_behaviour(self, image: str, behaviour: str | None) -> None:
        """Pods whose first container runs ``image`` (exactly, or its repository without tag or
        digest) get ``behaviour`` (see docs/testing.md "Pod behaviours") when created, unless their
        template names one; None forgets the image. Pods already created keep theirs."""
        ns, name = IMAGE_BEHAVIOURS
        patch = {"data": {image_key(image): behaviour}}
        with self.client() as http:
            resp = http.patch(
                f"/api/v1/namespaces/{ns}/configmaps/{name}",
                content=json.dumps(patch),
                headers={"Content-Type": "application/merge-patch+json"},
            )
            if resp.status_code != 200:
                raise HarnessError(f"setting the behaviour of {image}: {resp.status_code} {resp.text}")

    def set_gateway_api(self, enabled: bool, *, timeout: float = 60.0) -> None:
        """Remove (with every HTTPRoute, Gateway, ...) or reinstall the Gateway API CRDs, for tests of
        "weighted routing unavailable". The control plane is shared: restore it in a ``finally``."""
        docs = [
            d
            for d in _yaml_docs(self.bin_dir / "gateway-api-standard.yaml")
            if d["kind"] == "CustomResourceDefinition"
        ]
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        with self.client() as http:
            for doc in docs:
                if enabled:
                    resp = http.post(base, json=doc)
                    ok = resp.status_code in (201, 409)
                else:
                    resp = http.delete(f"{base}/{doc['metadata']['name']}")
                    ok = resp.status_code in (200, 202, 404)
                if not ok:
                    raise HarnessError(f"gateway api {enabled}: {resp.status_code} {resp.text}")

            def settled() -> bool:
                for doc in docs:
                    resp = http.get(f"{base}/{doc['metadata']['name']}")
                    if not enabled:
                        if resp.status_code != 404:
                            return False
                        continue
                    conds = (
                        resp.json().get("status", {}).get("conditions", []) if resp.status_code == 200 else []
                    )
                    if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                        return False
                return True

            wait_until(
                settled, timeout=timeout, interval=0.2, what=f"Gateway API CRDs {'up' if enabled else 'gone'}"
            )

    def alive(self) -> bool:
        """True while every component still runs."""
        return all(p.alive() for p in self.processes.values())

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every component's log (for error messages)."""
        return "\n".join(f"--- {n} ---\n{p.log_tail(lines)}" for n, p in self.processes.items())

    def stop(self) -> None:
        """Stop the fault proxy and every component's process group, newest first; idempotent."""
        if self.fault_proxy is not None:
            self.fault_proxy.stop()
            self.fault_proxy = None
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        if self.pod_sync is not None:
            self.pod_sync.stop()
            self.pod_sync = None
        for name in reversed(list(self.processes)):
            self.processes[name].stop(timeout=10.0)
        if self._api is not None:
            self._api.close()
            self._api = None
        if self.network is not None:
            self.network.destroy()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kubectl_binary() -> str:
    """The kubectl bootstrap put in .venv/bin, else the one on PATH."""
    venv = ROOT / ".venv" / "bin" / "kubectl"
    if venv.is_file():
        return str(venv)
    found = shutil.which("kubectl")
    if not found:
        raise HarnessError("kubectl not found (run scripts/bootstrap)")
    return found


def _start(cp: ControlPlane, name: str, argv: list[str], cwd: Path | None = None) -> ManagedProcess:
    proc = ManagedProcess(
        argv, log_path=cp.workdir / f"{name}.log", cwd=cwd or cp.workdir, die_with_parent=True
    )
    cp.processes[name] = proc
    return proc


def _check(cp: ControlPlane) -> None:
    for name, proc in cp.processes.items():
        proc.check_alive(name)


def _stage_config(workdir: Path, node_ip: str, *, node_port: int = 0) -> Path:
    """kwok's --config: a KwokConfiguration followed by the Stages of kwok-stages.yaml."""
    kwok_config = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "cidr": POD_CIDR,
            "nodeIP": node_ip,
            "manageAllNodes": False,
            "manageNodesWithAnnotationSelector": "kwok.x-k8s.io/node=fake",
            "nodeLeaseDurationSeconds": 40,
            # a config file gets no defaults for these: kwok's documented defaults, set explicitly
            "podPlayStageParallelism": 4,
            "nodePlayStageParallelism": 4,
            "nodeLeaseParallelism": 4,
            "podsOnNodeSyncParallelism": 1,
            "enablePodsOnNodeSyncListPager": True,
            "enablePodsOnNodeSyncStreamWatch": False,
            "enableDebuggingHandlers": True,
            "enableCRDs": ["Logs", "ClusterLogs"],
            **({"nodePort": node_port} if node_port else {}),
        },
    }
    path = workdir / "kwok.yaml"
    path.write_text(yaml.safe_dump(kwok_config, sort_keys=False) + "---\n" + STAGES_FILE.read_text())
    return path


# --------------------------------------------------------------------------------------------------
# Pod behaviours by image: a ConfigMap of image -> behaviour, applied to pods at admission by a
# MutatingAdmissionPolicy (real apiserver machinery), so a test can make one candidate digest crash
# while another of the same chart runs. An explicit pod annotation wins.

BEHAVIOUR_ANNOTATION = "kwok.railiance.dev/behaviour"
IMAGE_BEHAVIOURS = ("kube-system", "railiance-image-behaviours")


def image_key(image: str) -> str:
    """The ConfigMap key for ``image`` ("/", ":" and "@" become "_"; keys allow [-._a-zA-Z0-9])."""
    return image.replace("/", "_").replace(":", "_").replace("@", "_")


_IMAGE_KEY_CEL = "{}.replace('/', '_').replace(':', '_').replace('@', '_')"
_REPO_CEL = (
    "object.spec.containers[0].image.split('@')[0].lastIndexOf(':') > "
    "object.spec.containers[0].image.split('@')[0].lastIndexOf('/') ? "
    "object.spec.containers[0].image.split('@')[0].substring(0, "
    "object.spec.containers[0].image.split('@')[0].lastIndexOf(':')) : "
    "object.spec.containers[0].image.split('@')[0]"
)


def image_behaviour_policy() -> list[dict[str, Any]]:
    """The ConfigMap, MutatingAdmissionPolicy and binding that apply ``IMAGE_BEHAVIOURS``."""
    ns, name = IMAGE_BEHAVIOURS
    api = "admissionregistration.k8s.io/v1beta1"
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {}},
        {
            "apiVersion": api,
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": "railiance-image-behaviours"},
            "spec": {
                "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ]
                },
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "variables": [
                    {"name": "key", "expression": _IMAGE_KEY_CEL.format("object.spec.containers[0].image")},
                    {"name": "repoKey", "expression": _IMAGE_KEY_CEL.format(f"({_REPO_CEL})")},
                    {
                        "name": "behaviour",
                        "expression": (
                            "params == null || !has(params.data) ? '' : "
                            "variables.key in params.data ? params.data[variables.key] : "
                            "variables.repoKey in params.data ? params.data[variables.repoKey] : ''"
                        ),
                    },
                    {
                        "name": "explicit",
                        "expression": (
                            "has(object.metadata.annotations) && "
                            f"'{BEHAVIOUR_ANNOTATION}' in object.metadata.annotations"
                        ),
                    },
                ],
                "mutations": [
                    {
                        "patchType": "ApplyConfiguration",
                        "applyConfiguration": {
                            "expression": (
                                "variables.behaviour == '' || variables.explicit ? Object{} : "
                                "Object{metadata: Object.metadata{annotations: "
                                f"{{'{BEHAVIOUR_ANNOTATION}': variables.behaviour}}}}}}"
                            )
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": api,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": "railiance-image-behaviours"},
            "spec": {
                "policyName": "railiance-image-behaviours",
                "paramRef": {"name": name, "namespace": ns, "parameterNotFoundAction": "Allow"},
            },
        },
    ]


def node_manifest(index: int, pod_cidr: str) -> dict[str, Any]:
    """The fake node ``kwok-node-<index>`` with ``pod_cidr``."""
    name = f"kwok-node-{index}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "topology.kubernetes.io/zone": f"zone-{index}",
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "v1.35.4",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "kubeProxyVersion": "",
                "osImage": "kwok",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }


def _yaml_docs(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind"):
            yield doc


def start_control_plane(
    workdir: Path,
    *,
    port: int = 0,
    nodes: int = 2,
    bin_dir: Path | None = None,
    gateway_api: bool = True,
    fault_proxy: bool = True,
    network: bool = True,
    timeout: float = 120.0,
) -> ControlPlane:
    """Start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback.

    Returns once the apiserver is ready, the fake nodes are Ready, the ``default`` ServiceAccount
    exists and (``gateway_api``) the Gateway API CRDs are established. On any failure everything
    already started is stopped and ``HarnessError`` carries the components' log tails.
    """
    bin_dir = bin_dir or binaries_dir()
    if bin_dir is None:
        raise HarnessError("control-plane binaries are not built: run scripts/k8s-binaries")
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    pki = _make_pki(workdir / "pki")
    net: TestNetwork | None = None
    network_error = "not requested" if not network else network_available()
    if network_error is None:
        try:
            net = create_network(nodes)
        except HarnessError as exc:  # e.g. root without CAP_NET_ADMIN: run without pod traffic
            network_error = str(exc)
    token = secrets.token_hex(24)
    (workdir / "tokens.csv").write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    port = port or free_port()
    url = f"https://127.0.0.1:{port}"
    cp = ControlPlane(
        url=url,
        workdir=workdir,
        bin_dir=bin_dir,
        kubeconfig_path=write_kubeconfig(workdir / "kubeconfig", server=url, ca_crt=pki.ca_crt, token=token),
        admin_kubeconfig_path=write_kubeconfig(
            workdir / "admin.kubeconfig",
            server=url,
            ca_crt=pki.ca_crt,
            client_crt=pki.admin_crt,
            client_key=pki.admin_key,
        ),
        token=token,
        pki=pki,
        nodes=[f"kwok-node-{i}" for i in range(1, nodes + 1)],
        network=net,
        network_error=network_error,
    )
    try:
        _boot(cp, port=port, nodes=nodes, gateway_api=gateway_api, timeout=timeout, t0=t0)
        if fault_proxy:
            cp.fault_proxy = FaultProxy(
                url, ca_path=pki.ca_crt, cert_path=pki.server_crt, key_path=pki.server_key
            )
            cp.proxied_kubeconfig_path = write_kubeconfig(
                workdir / "proxied.kubeconfig", server=cp.fault_proxy.url, ca_crt=pki.ca_crt, token=token
            )
    except BaseException as exc:
        tails = cp.log_tails()
        cp.stop()
        if isinstance(exc, HarnessError):
            raise HarnessError(f"{exc}\n{tails}") from exc
        raise
    return cp


def _boot(cp: ControlPlane, *, port: int, nodes: int, gateway_api: bool, timeout: float, t0: float) -> None:
    b = cp.bin_dir
    pki = cp.pki
    # Without a test network the address plan is the same, in slot 0, and nothing is routed.
    plan = cp.network or TestNetwork(slot=0, nodes=nodes)
    kubeconfig = str(cp.admin_kubeconfig_path)

    etcd_port, etcd_peer = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    _start(
        cp,
        "etcd",
        [
            str(b / "etcd"),
            "--name=default",
            f"--data-dir={cp.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )

    def etcd_ready() -> bool:
        _check(cp)
        return bool(httpx.get(f"{etcd_url}/health", timeout=2).json().get("health") == "true")

    wait_until(etcd_ready, timeout=30, interval=0.1, what="etcd /health")
    cp.timings["etcd"] = time.monotonic() - t0

    _start(
        cp,
        "kube-apiserver",
        [
            str(b / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--advertise-address={plan.host_ip}",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki.server_crt}",
            f"--tls-private-key-file={pki.server_key}",
            f"--client-ca-file={pki.ca_crt}",
            f"--token-auth-file={cp.workdir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,MutatingAdmissionPolicy",
            # MutatingAdmissionPolicy (beta in 1.35) maps images to pod behaviours (IMAGE_BEHAVIOURS)
            "--feature-gates=MutatingAdmissionPolicy=true",
            "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--goaway-chance=0",
            # logs (and exec, port-forward) go to the node's kubelet port: kwok's server
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki.admin_crt}",
            f"--kubelet-client-key={pki.admin_key}",
            f"--cert-dir={cp.workdir / 'apiserver-certs'}",
            "--v=1",
        ],
    )
    http = cp.client(timeout=5.0)

    def apiserver_ready() -> bool:
        _check(cp)
        return http.get("/readyz").status_code == 200

    try:
        wait_until(apiserver_ready, timeout=timeout, interval=0.2, what="kube-apiserver /readyz")
        cp.timings["kube-apiserver"] = time.monotonic() - t0

        _start(
            cp,
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                f"--cluster-signing-cert-file={pki.ca_crt}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--use-service-account-credentials=false",
                "--allocate-node-cidrs=false",
                f"--cluster-cidr={POD_CIDR}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--v=1",
            ],
        )
        _start(
            cp,
            "kube-scheduler",
            [
                str(b / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        crds: list[str] = []
        crd_files = [cp.bin_dir / "kwok-crds.yaml"]
        if gateway_api:
            crd_files.append(cp.bin_dir / "gateway-api-standard.yaml")
        for crd_file in crd_files:
            # The standard channel ships CRDs and a ValidatingAdmissionPolicy (+ binding) that
            # refuses downgrades to older experimental CRDs.
            paths = {
                "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                "ValidatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
                "ValidatingAdmissionPolicyBinding": (
                    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
                ),
            }
            for doc in _yaml_docs(crd_file):
                if doc["kind"] not in paths:
                    raise HarnessError(f"unexpected {doc['kind']} in {crd_file}")
                resp = http.post(paths[doc["kind"]], json=doc)
                if resp.status_code not in (201, 409):
                    raise HarnessError(
                        f"creating {doc['kind']} {doc['metadata']['name']}: {resp.status_code} {resp.text}"
                    )
                if doc["kind"] == "CustomResourceDefinition":
                    crds.append(doc["metadata"]["name"])

        policy_paths = {
            "ConfigMap": f"/api/v1/namespaces/{IMAGE_BEHAVIOURS[0]}/configmaps",
            "MutatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1beta1/mutatingadmissionpolicies",
            "MutatingAdmissionPolicyBinding": (
                "/apis/admissionregistration.k8s.io/v1beta1/mutatingadmissionpolicybindings"
            ),
        }
        for obj in image_behaviour_policy():
            resp = http.post(policy_paths[obj["kind"]], json=obj)
            if resp.status_code not in (201, 409):
                raise HarnessError(f"creating {obj['kind']}: {resp.status_code} {resp.text}")

        # kwok serves pod logs (Logs/ClusterLogs objects name a file) on the nodes' kubelet port,
        # at the nodes' InternalIP: the host side of the test network.
        kwok_crds = [d["metadata"]["name"] for d in _yaml_docs(cp.bin_dir / "kwok-crds.yaml")]

        def kwok_crds_established() -> bool:
            for name in kwok_crds:
                crd = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
                conds = crd.get("status", {}).get("conditions", [])
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    return False
            return True

        wait_until(kwok_crds_established, timeout=30, interval=0.1, what="kwok CRDs established")
        server = f"{plan.host_ip}:{KUBELET_PORT}" if cp.network is not None else f"127.0.0.1:{free_port()}"
        _start(
            cp,
            "kwok",
            [
                str(b / "kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={_stage_config(cp.workdir, plan.host_ip, node_port=KUBELET_PORT if cp.network else 0)}",
                f"--server-address={server}",
                f"--tls-cert-file={pki.server_crt}",
                f"--tls-private-key-file={pki.server_key}",
                "--v=INFO",
            ],
        )
        for i in range(1, nodes + 1):
            resp = http.post("/api/v1/nodes", json=node_manifest(i, plan.node_cidr(i)))
            if resp.status_code not in (201, 409):
                raise HarnessError(f"creating node kwok-node-{i}: {resp.status_code} {resp.text}")

        def settled() -> bool:
            _check(cp)
            node_list = http.get("/api/v1/nodes").json().get("items", [])
            ready = [
                n
                for n in node_list
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            if len(ready) < nodes:
                return False
            if http.get("/api/v1/namespaces/default/serviceaccounts/default").status_code != 200:
                return False
            for name in crds:
                crd = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
                conds = crd.get("status", {}).get("conditions", [])
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    return False
            return True

        if cp.network is not None:
            _start_pod_host(cp)
        wait_until(settled, timeout=timeout, interval=0.2, what="nodes Ready, default ServiceAccount, CRDs")
        cp.timings["ready"] = time.monotonic() - t0
    finally:
        http.close()


def _start_pod_host(cp: ControlPlane) -> None:
    """The pod host inside the test network, and the loop that tells it which pods run."""
    import sys

    assert cp.network is not None
    listen = f"{cp.network.namespace_ip}:{PODHOST_PORT}"
    argv = cp.network.exec_argv([sys.executable, "-m", "tests.harness.podhost", "--listen", listen])
    _start(cp, "podhost", argv, cwd=ROOT)

    def podhost_ready() -> bool:
        _check(cp)
        return httpx.get(f"http://{listen}/healthz", timeout=2).status_code == 200

    wait_until(podhost_ready, timeout=30, interval=0.1, what="pod host in the test network")
    cp._api = cp.client(timeout=10.0)
    cp.pod_sync = PodSync(cp._api, f"http://{listen}").start()


def start(port: int, workdir: Path) -> Any:
    """``python -m tests.harness kube-real``: start the control plane and describe it."""
    from tests.harness.__main__ import Service

    cp = start_control_plane(workdir, port=port)
    return Service(
        url=cp.url,
        stop=cp.stop,
        details=[
            f"kubeconfig: {cp.kubeconfig_path} (context {CONTEXT}, bearer token, CA inline)",
            f"admin kubeconfig: {cp.admin_kubeconfig_path} (client certificate, system:masters)",
            f"nodes: {', '.join(cp.nodes)} (kwok); pod behaviours: annotation kwok.railiance.dev/behaviour",
            f"binaries: {cp.bin_dir}",
            *(
                [
                    (
                        f"fault proxy: {cp.fault_proxy.url} (kubeconfig {cp.proxied_kubeconfig_path}),"
                        f" control {cp.fault_proxy.control_url}/faults"
                    )
                ]
                if cp.fault_proxy
                else []
            ),
            f"started in {cp.timings['ready']:.1f}s ("
            + ", ".join(f"{k} {v:.1f}s" for k, v in cp.timings.items())
            + ")",
            *(
                [
                    f"test network: netns {cp.network.name}, pod CIDRs {', '.join(cp.network.node_cidrs)}",
                    f"test gateway: {cp.gateway().url} (routes by Ingress and HTTPRoute; Host header picks the host)",
                ]
                if cp.network
                else ["test network: none (needs root and iproute2): no pod traffic, no gateway"]
            ),
            f"logs: {cp.workdir}/<component>.log",
            f"try: KUBECONFIG={cp.kubeconfig_path} kubectl get nodes",
        ],
    )


def as_json(obj: Any) -> str:
    """Compact JSON (for patch bodies)."""
    return json.dumps(obj, separators=(",", ":"))
