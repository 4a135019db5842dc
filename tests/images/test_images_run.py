"""The three images, built for real (tests/images/containers.py), started as the chart starts them."""

from __future__ import annotations

import pytest

from tests.images.containers import CHART_SECURITY, Docker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]  # a cold start builds every image


def test_images_run_as_the_chart_runs_them(dockerd: Docker, built_images: dict[str, str]) -> None:
    """Non-root, read-only root filesystem, no capabilities: each image's command still starts."""
    for role, command in (("runtime", ["runtime", "worker", "--help"]), ("registry", ["registry", "migrate", "--help"]),
                          ("operator", ["operator", "run", "--help"])):
        assert dockerd.inspect(built_images[role])["Config"]["User"] == "10001:10001", role
        out = dockerd("run", "--rm", "--network", "host", *CHART_SECURITY, "--tmpfs", "/tmp", built_images[role], *command,
                      check=False, timeout=120)
        assert out.returncode == 0, f"{role}: {out.stdout}{out.stderr}"
    # The CPU variant's frameworks import (torch's CPU wheel, onnxruntime) as that user.
    out = dockerd("run", "--rm", "--network", "host", *CHART_SECURITY, "--tmpfs", "/tmp", "--entrypoint", "python",
                  built_images["runtime"], "-c", "import torch, onnxruntime; print(torch.__version__)", timeout=300)
    assert out.stdout.strip() == "2.13.0+cpu", out.stdout
    # The premise of containerize: the shared image lacks the slugger example's package.
    out = dockerd("run", "--rm", "--network", "host", *CHART_SECURITY, "--entrypoint", "python",
                  built_images["runtime"], "-c", "import slugify", check=False, timeout=120)
    assert out.returncode != 0 and "No module named 'slugify'" in out.stderr, out.stderr
