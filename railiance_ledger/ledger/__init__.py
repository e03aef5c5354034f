"""The ledger: event store, hash chain, append-only enforcement, verification and projections.

Imports only ``railiance_ledger.domain``, ``railiance_ledger.errors``, the standard library and
SQLAlchemy. Import the submodules (``store``, ``verify``, ``projections``) directly; this package
module stays import-light so the CLI pays only for what it uses.
"""
