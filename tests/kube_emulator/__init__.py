"""A stateful Kubernetes API server emulator for tests, served over real HTTP on loopback.

Used through the official ``kubernetes`` client, ``kubectl`` and ``helm``; see docs/testing.md.
"""

from tests.kube_emulator.behaviour import BehaviourRegistry, PodMode
from tests.kube_emulator.server import Faults, KubeEmulator

__all__ = ["BehaviourRegistry", "Faults", "KubeEmulator", "PodMode"]
