"""Copy the single sources in crds/ into the Helm chart (`make chart`; tests/chart checks it).

- Every CustomResourceDefinition of crds/*.yaml goes to charts/jubako/crds/<file> (other
  documents in those files, such as RBAC or a peering object, are rendered by templates).
- The operator's ClusterRole rules of crds/rbac.yaml go to charts/jubako/files/operator-rules.yaml,
  which the chart's RBAC template reads: the chart and plain `kubectl apply` grant the same.

Usage: python scripts/sync_chart.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "jubako"
HEADER = "# Generated from crds/{name} by `make chart`; edit the source, not this copy.\n"


def crd_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]


def dump_all(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def wanted() -> dict[Path, str]:
    out = {}
    for src in sorted((ROOT / "crds").glob("*.yaml")):
        docs = crd_documents(src)
        if docs:
            out[CHART / "crds" / src.name] = HEADER.format(name=src.name) + dump_all(docs)
    (role,) = [d for d in yaml.safe_load_all((ROOT / "crds" / "rbac.yaml").read_text())
               if d and d["kind"] == "ClusterRole"]
    out[CHART / "files" / "operator-rules.yaml"] = HEADER.format(name="rbac.yaml") + yaml.safe_dump(role["rules"], sort_keys=False)
    return out


def main() -> None:
    files = wanted()
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    extra = [p for p in (CHART / "crds").glob("*.yaml") if p not in files]
    if "--check" in sys.argv:
        if stale or extra:
            sys.exit("chart out of date (run `make chart`): " + ", ".join(str(p.relative_to(ROOT)) for p in stale + extra))
        return
    for p in extra:
        p.unlink()
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


if __name__ == "__main__":
    main()
