"""Load a bento's service as a worker would and print its outputs on fixed inputs (JSON).

Usage: python predict.py TAG_OR_PATH  (JUBAKO_HOME selects the store)
"""

from __future__ import annotations

import json
import sys

import numpy as np

import jubako
from jubako.loader import load_service, open_bento


def main() -> None:
    bundle = open_bento(sys.argv[1])
    svc = load_service(bundle)
    with jubako.models.bento_context(bundle.path, bundle.manifest):
        instance = svc.create()
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    out = svc.apis["predict"].func(instance, x)
    json.dump({"predict": np.asarray(out).tolist(), "digest": bundle.manifest.digest()}, sys.stdout)


if __name__ == "__main__":
    main()
