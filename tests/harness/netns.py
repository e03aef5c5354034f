"""The test network: a network namespace this run creates, holding the fake nodes' pod IPs.

kube-apiserver will not proxy to loopback or link-local addresses, so pods need addresses that
are neither and that real local processes can serve. ``TestNetwork.create()`` makes (Debian's
iproute2, as root):

- a network namespace ``railiance-<slot>`` and a veth pair ``rl<slot>h`` (host) / ``rl<slot>n``;
- the link subnet ``198.18.<4*slot>.0/24``: host ``.1``, namespace ``.2``;
- in the namespace, a ``local`` route for each node's pod CIDR ``198.18.<4*slot+i>.0/24``
  (i = 1..3): every address of it is the namespace's own, so a process there binds any pod IP;
- on the host, a route for each pod CIDR via the namespace.

Traffic goes only to loopback and to these test hosts. Each run takes a free slot (1..62), so
concurrent runs on one machine do not collide; ``destroy()`` deletes the namespace (and with it the
veth pair and the host routes). ``available()`` tells whether this process may do any of it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from tests.harness import HarnessError

MAX_NODES = 3


def available() -> str | None:
    """None when a test network can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise HarnessError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class TestNetwork:
    """One slot of 198.18.0.0/16: the link subnet and up to three node pod CIDRs."""

    slot: int
    nodes: int = 2
    created: bool = False

    __test__ = False  # not a pytest test class

    @property
    def name(self) -> str:
        """The network namespace."""
        return f"railiance-{self.slot}"

    @property
    def host_ip(self) -> str:
        """The host side of the veth pair (also the fake nodes' InternalIP)."""
        return f"198.18.{4 * self.slot}.1"

    @property
    def namespace_ip(self) -> str:
        """The namespace side of the veth pair."""
        return f"198.18.{4 * self.slot}.2"

    def node_cidr(self, index: int) -> str:
        """Pod CIDR of node ``index`` (1-based)."""
        if not 1 <= index <= MAX_NODES:
            raise ValueError(f"node index {index} outside 1..{MAX_NODES}")
        return f"198.18.{4 * self.slot + index}.0/24"

    @property
    def node_cidrs(self) -> list[str]:
        """The pod CIDRs of every node."""
        return [self.node_cidr(i) for i in range(1, self.nodes + 1)]

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def create(self) -> TestNetwork:
        """Make the namespace, veth pair and routes; on failure undo what was made."""
        host, peer = f"rl{self.slot}h", f"rl{self.slot}n"
        steps = [
            ("netns", "add", self.name),
            ("link", "add", host, "type", "veth", "peer", "name", peer),
            ("link", "set", peer, "netns", self.name),
            ("addr", "add", f"{self.host_ip}/24", "dev", host),
            ("link", "set", host, "up"),
            ("-n", self.name, "addr", "add", f"{self.namespace_ip}/24", "dev", peer),
            ("-n", self.name, "link", "set", peer, "up"),
            ("-n", self.name, "link", "set", "lo", "up"),
        ]
        for cidr in self.node_cidrs:
            steps.append(("-n", self.name, "route", "add", "local", cidr, "dev", "lo"))
            steps.append(("route", "add", cidr, "via", self.namespace_ip, "dev", host))
        try:
            for step in steps:
                _ip(*step)
                if step[:2] == ("netns", "add"):
                    self.created = True
        except HarnessError:
            self.destroy()
            _ip("link", "del", host, check=False)
            raise
        return self

    def destroy(self) -> None:
        """Delete the namespace (its veth pair and the host routes go with it); idempotent."""
        if self.created:
            _ip("netns", "del", self.name, check=False)
            self.created = False


def _used_slots() -> set[int]:
    used: set[int] = set()
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith("railiance-") and name[len("railiance-") :].isdigit():
            used.add(int(name[len("railiance-") :]))
    for line in _ip("route", "show", check=False).stdout.splitlines():
        first = line.split()[0] if line.strip() else ""
        if first.startswith("198.18."):
            used.add(int(first.split(".")[2]) // 4)
    return used


STALE_AFTER = 600.0  # seconds: a test network with no process in it for this long was left behind


def reap_stale() -> list[str]:
    """Delete ``railiance-<slot>`` namespaces that a killed run left behind: no process inside and
    older than ``STALE_AFTER`` (a new one is empty only for the seconds before its pod host starts)."""
    import time

    removed = []
    for slot in _used_slots():
        name = f"railiance-{slot}"
        path = f"/run/netns/{name}"
        try:
            age = time.time() - os.stat(path).st_mtime
        except OSError:
            continue
        if age > STALE_AFTER and not _ip("netns", "pids", name, check=False).stdout.strip():
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def create_network(nodes: int = 2) -> TestNetwork:
    """A new ``TestNetwork`` in a free slot (tries a few in case another run races for one)."""
    if nodes > MAX_NODES:
        raise HarnessError(f"the test network has room for {MAX_NODES} nodes, not {nodes}")
    why = available()
    if why:
        raise HarnessError(f"cannot create the test network: {why}")
    reap_stale()
    last: HarnessError | None = None
    for _ in range(5):
        free = sorted(set(range(1, 63)) - _used_slots())
        if not free:
            raise HarnessError("no free test-network slot (ip netns list: railiance-1..62 all taken)")
        try:
            return TestNetwork(slot=random.choice(free), nodes=nodes).create()
        except HarnessError as exc:
            last = exc
    raise HarnessError(f"could not create the test network: {last}")
