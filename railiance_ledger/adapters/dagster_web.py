"""Dagster's webserver GraphQL API, as the webhook receiver's fast path uses it (httpx only; the
package never imports dagster).

``DagsterWeb(client, url)``: ``stage1_requested(key)`` (a run of the partition exists),
``launch_stage1(key, tags)`` (adds the dynamic partition, then launches the ``stage1`` job for it).
Failures leave as ``AdapterError`` naming system ``dagster``.
"""

from __future__ import annotations

from typing import Any

import httpx

from railiance_ledger.errors import AdapterProtocolError, AdapterUnavailable

__all__ = ["DagsterWeb"]

SYSTEM = "dagster"
PARTITIONS = "candidates"
JOB = "stage1"
REPOSITORY = "__repository__"


class DagsterWeb:
    """The webserver at ``url`` (``http://host:3000``)."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self._client = client
        self._url = url.rstrip("/") + "/graphql"
        self._location: str | None = None

    def _query(self, query: str, variables: dict[str, Any], operation: str) -> dict[str, Any]:
        try:
            response = self._client.post(self._url, json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            raise AdapterUnavailable(
                f"{type(exc).__name__}", system=SYSTEM, operation=operation, address=self._url
            ) from exc
        if response.status_code != 200:
            raise AdapterUnavailable(
                f"HTTP {response.status_code}", system=SYSTEM, operation=operation, address=self._url
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise AdapterProtocolError(
                "not JSON", system=SYSTEM, operation=operation, address=self._url
            ) from exc
        if not isinstance(body, dict) or body.get("errors") or not isinstance(body.get("data"), dict):
            raise AdapterProtocolError(
                f"GraphQL errors: {str(body.get('errors') if isinstance(body, dict) else body)[:200]}",
                system=SYSTEM,
                operation=operation,
                address=self._url,
            )
        data: dict[str, Any] = body["data"]
        return data

    def location(self) -> str:
        """The name of the code location that has the ``stage1`` job (first found; cached)."""
        if self._location is None:
            data = self._query(
                "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {"
                " ... on RepositoryLocation { repositories { name jobs { name } } } } } } } }",
                {},
                "workspace",
            )
            for entry in (data.get("workspaceOrError") or {}).get("locationEntries") or []:
                loc = entry.get("locationOrLoadError") or {}
                for repo in loc.get("repositories") or []:
                    if any(j.get("name") == JOB for j in repo.get("jobs") or []):
                        self._location = str(entry["name"])
                        return self._location
            raise AdapterProtocolError(
                f"no code location has a {JOB} job", system=SYSTEM, operation="workspace", address=self._url
            )
        return self._location

    def stage1_requested(self, key: str) -> bool:
        """True when a run of partition ``key`` exists already (requested by a sensor or this receiver)."""
        data = self._query(
            'query($key: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $key}]},'
            " limit: 1) { ... on Runs { results { runId } } } }",
            {"key": key},
            "runs",
        )
        return bool(((data.get("runsOrError") or {}).get("results")) or [])

    def launch_stage1(self, key: str, tags: dict[str, str]) -> str:
        """Add partition ``key`` and launch the ``stage1`` job for it; the run id."""
        selector = {"repositoryLocationName": self.location(), "repositoryName": REPOSITORY}
        added = self._query(
            "mutation($sel: RepositorySelector!, $name: String!, $key: String!) {"
            " addDynamicPartition(repositorySelector: $sel, partitionsDefName: $name, partitionKey: $key) {"
            " __typename ... on PythonError { message } ... on UnauthorizedError { message } } }",
            {"sel": selector, "name": PARTITIONS, "key": key},
            "addDynamicPartition",
        )
        kind = (added.get("addDynamicPartition") or {}).get("__typename")
        if kind not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise AdapterProtocolError(
                f"addDynamicPartition answered {kind}",
                system=SYSTEM,
                operation="addDynamicPartition",
                address=self._url,
            )
        params = {
            "selector": {**selector, "jobName": JOB},
            "executionMetadata": {
                "tags": [
                    {"key": "dagster/partition", "value": key},
                    *({"key": k, "value": v} for k, v in tags.items()),
                ]
            },
        }
        launched = self._query(
            "mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {"
            " __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
            {"params": params},
            "launchRun",
        )
        result = launched.get("launchRun") or {}
        if result.get("__typename") != "LaunchRunSuccess":
            raise AdapterProtocolError(
                f"launchRun answered {result.get('__typename')}: {str(result.get('message', ''))[:200]}",
                system=SYSTEM,
                operation="launchRun",
                address=self._url,
            )
        return str(result["run"]["runId"])
