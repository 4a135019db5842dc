"""The CPUs a process can use (jubako.devices.available_cpus): its affinity, capped by a
CPU quota of its cgroup or any cgroup above it, cgroup v2 or v1, read from fake cgroup
trees. A worker started under a real quota is in tests/runtime/test_cpu_quota.py."""

from __future__ import annotations

import os
from pathlib import Path

from jubako.devices import available_cpus, cgroup_cpu_quota


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_cgroup_v2_the_tightest_quota_on_the_path_up_to_the_root(tmp_path: Path) -> None:
    root = tree(tmp_path / "fs", {"cpu.max": "max 100000\n", "kubepods/cpu.max": "800000 100000\n",
                                  "kubepods/pod1/cpu.max": "250000 100000\n", "kubepods/pod1/c1/cpu.max": "max 100000\n"})
    proc = tree(tmp_path, {"cgroup": "0::/kubepods/pod1/c1\n"}) / "cgroup"
    assert cgroup_cpu_quota(root, proc) == 2.5
    (root / "kubepods/pod1/cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, proc) == 8.0
    (root / "kubepods/cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, proc) is None


def test_cgroup_v1_and_a_container_whose_own_cgroup_is_the_mount_root(tmp_path: Path) -> None:
    root = tree(tmp_path / "fs", {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    # Docker on v1: /proc/self/cgroup names the host's path, which is not mounted inside
    proc = tree(tmp_path, {"cgroup": "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"}) / "cgroup"
    assert cgroup_cpu_quota(root, proc) == 0.5
    (root / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(root, proc) is None
    nested = tree(tmp_path / "fs", {"cpu,cpuacct/jobs/j1/cpu.cfs_quota_us": "300000\n",
                                    "cpu,cpuacct/jobs/j1/cpu.cfs_period_us": "100000\n"})
    proc.write_text("4:cpu,cpuacct:/jobs/j1\n")
    assert cgroup_cpu_quota(nested, proc) == 3.0


def test_no_cgroup_files_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "nothing", tmp_path / "no-cgroup") is None


def test_available_cpus_is_the_quota_rounded_down_at_least_one_at_most_the_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    proc = tree(tmp_path, {"cgroup": "0::/pod\n"}) / "cgroup"
    for quota, want in (("50000 100000", 1), ("150000 100000", 1), ("100000 100000", 1),
                        (f"{(affinity + 3) * 100000} 100000", affinity), ("max 100000", affinity)):
        root = tree(tmp_path / quota.replace(" ", "-"), {"pod/cpu.max": quota})
        assert available_cpus(root, proc) == want, quota


def test_batch_defaults_count_the_cpus_a_quota_leaves(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`jubako run` in a Job pod limited to one CPU: one instance, in this process (not a
    shard per core of the node), with as many intra-op threads as that CPU."""
    from jubako.batch import inprocess, runner, sharded
    from jubako.manifest import TensorSpec

    for module in (inprocess, sharded):
        monkeypatch.setattr(module, "available_cpus", lambda: 1)
    monkeypatch.setattr("jubako.devices.available_cpus", lambda: 1)
    monkeypatch.delenv("JUBAKO_DEVICE", raising=False)
    assert inprocess.default_lanes() == 1 and sharded.default_shards() == 1
    spec = type("Spec", (), {"input": TensorSpec(dtype="float32", shape=(None, 16))})()
    assert runner.choose_executor("auto", spec, None, gpu=False) == "inprocess"
    monkeypatch.setattr("jubako.devices.available_cpus", lambda: 3)
    assert runner.choose_executor("auto", spec, None, gpu=False) == "sharded"
