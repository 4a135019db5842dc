"""The curl commands the README, the docs and `make run` suggest work as written: a JSON API
answers 415 to a body declared as anything but JSON, and `curl -d` declares
application/x-www-form-urlencoded unless told otherwise (`make run` suggested one such
command, answered 415)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_suggested_curl_with_a_body_declares_json() -> None:
    places = [ROOT / "README.md", ROOT / "scripts" / "demo.sh", *sorted((ROOT / "docs").glob("*.md"))]
    bad = []
    for path in places:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bcurl\b", line) and re.search(r"\s(-d|--data(-binary|-raw)?)\s", line) \
                    and "application/json" not in line.lower() and "--json" not in line:
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)
