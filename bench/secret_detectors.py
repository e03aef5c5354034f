"""Detection rate and false positives of the candidate secret detectors on tests/secret_corpus.py.

    .venv/bin/python bench/secret_detectors.py

Detectors measured: the project's redaction path (railiance_ledger.domain.redaction.redact) and
detect-secrets 1.5 used as a library (default plugin set, incl. its Base64/Hex high-entropy
detectors) when it is installed. A shape is detected when its secret does not survive (redact) or
when a reported secret overlaps it by at least 8 characters (detect-secrets, which reports, not
redacts). A piece of evidence is a false positive when anything in it is changed / reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from secret_corpus import EVIDENCE, SHAPES  # noqa: E402

from railiance_ledger.domain.redaction import redact  # noqa: E402


def _overlap(a: str, b: str, n: int = 8) -> bool:
    if len(a) < n or len(b) < n:
        return a in b or b in a
    return any(a[i : i + n] in b for i in range(0, len(a) - n + 1))


def _ours() -> tuple[Callable[[str, str], bool], Callable[[str], bool]]:
    def hit(text: str, secret: str) -> bool:
        return secret not in redact(text)

    def fp(text: str) -> bool:
        return redact(text) != text

    return hit, fp


def _detect_secrets() -> tuple[Callable[[str, str], bool], Callable[[str], bool]] | None:
    try:
        from detect_secrets.core import scan
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def found(text: str) -> list[str]:
        values: list[str] = []
        # The file scanner's line path with its default filters (scan_line() is the ad-hoc mode that
        # turns the entropy limits and heuristic filters off).
        with default_settings():
            lines = list(enumerate(text.splitlines(), 1))
            values.extend(
                str(s.secret_value) for s in scan._process_line_based_plugins(lines, "evidence.log")
            )
        return values

    def hit(text: str, secret: str) -> bool:
        return any(_overlap(v, secret) for v in found(text))

    def fp(text: str) -> bool:
        return bool(found(text))

    return hit, fp


def _gitleaks() -> tuple[Callable[[str, str], bool], Callable[[str], bool]] | None:
    """The gitleaks binary (GITLEAKS=path, else on PATH), built from github.com/zricethezav/gitleaks/v8,
    scanning the whole corpus once as files (``gitleaks dir``) with its default rule set."""
    binary = os.environ.get("GITLEAKS") or shutil.which("gitleaks")
    if not binary:
        return None
    texts = [s.text for s in SHAPES] + list(EVIDENCE)
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            Path(tmp, f"{i:03d}.txt").write_text(text, encoding="utf-8")
        report = Path(tmp, "report.json")
        subprocess.run(
            [
                binary,
                "dir",
                tmp,
                "--no-banner",
                "--report-format",
                "json",
                "--report-path",
                str(report),
                "--exit-code",
                "0",
                "--log-level",
                "error",
            ],
            check=True,
            timeout=300,
        )
        found: dict[str, list[str]] = {}
        for item in json.loads(report.read_text(encoding="utf-8")):
            found.setdefault(texts[int(Path(item["File"]).stem)], []).append(item["Secret"])

    def hit(text: str, secret: str) -> bool:
        return any(_overlap(v, secret) for v in found.get(text, []))

    def fp(text: str) -> bool:
        return bool(found.get(text))

    return hit, fp


def main() -> None:
    detectors = {
        "railiance redact()": _ours(),
        "detect-secrets 1.5 (library)": _detect_secrets(),
        "gitleaks (binary, default rules)": _gitleaks(),
    }
    for name, pair in detectors.items():
        if pair is None:
            print(f"{name}: not installed")
            continue
        hit, fp = pair
        t0 = time.perf_counter()
        missed = [s.name for s in SHAPES if not hit(s.text, s.secret)]
        fps = [e for e in EVIDENCE if fp(e)]
        dt = time.perf_counter() - t0
        got = len(SHAPES) - len(missed)
        print(
            f"{name}: detected {got}/{len(SHAPES)} ({100 * got / len(SHAPES):.1f}%), "
            f"false positives {len(fps)}/{len(EVIDENCE)} evidence strings, {dt * 1000:.0f} ms"
        )
        for m in missed:
            print(f"    missed: {m}")
        for e in fps:
            print(f"    false positive: {e}")


if __name__ == "__main__":
    main()
