"""Adapters: one module per external system, each behind a Protocol.

Every adapter takes an injected client (an ``httpx.Client``, a ``kubernetes.client.ApiClient``, a
helm binary path), exposes keyword-only calls shaped for what the lifecycle needs, and translates
every third-party failure into the ``AdapterError`` hierarchy of ``railiance_ledger.errors`` with
the system, the operation and the address in the message. Adapters import only
``railiance_ledger.domain``, ``railiance_ledger.errors`` (and ``declaration`` for types), the
standard library and their client library.
"""
