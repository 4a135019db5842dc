import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import jubako
from jubako.errors import InvalidBundle, JubakoError, NotFound
from jubako.manifest import ModelRef
from jubako.store import Store
from tests.core import torch_factories


def test_torch_state_dict_round_trip(store: Store) -> None:
    module = torch_factories.seeded(width=5)
    bundle = jubako.models.torch.save(
        "tiny", module, factory=torch_factories.tiny, factory_kwargs={"width": 5},
        inputs=[("x", "float32", [None, 4])], labels={"k": "v"}, store=store,
    )
    m = bundle.manifest
    assert m.framework == "torch" and m.format == "torch.state_dict"
    assert m.framework_version == torch.__version__
    assert m.options["factory"] == "tests.core.torch_factories:tiny"
    assert m.inputs[0].shape == [None, 4] and m.labels == {"k": "v"}
    assert [f.path for f in m.files] == ["weights.pt"] and m.files[0].size > 0
    loaded = jubako.models.load("tiny", store=store)
    x = torch.randn(3, 4)
    with torch.inference_mode():
        assert torch.equal(loaded(x), module(x))
    assert not loaded.training


def test_torchscript_round_trip(store: Store) -> None:
    module = torch_factories.seeded()
    jubako.models.torch.save("ts", module, torchscript=True, example_inputs=(torch.randn(1, 4),), store=store)
    loaded = jubako.models.load("ts", store=store)
    x = torch.randn(2, 4)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), module(x))


def test_torch_save_needs_an_importable_factory(store: Store) -> None:
    def local() -> torch.nn.Module:
        return torch_factories.tiny()

    with pytest.raises(JubakoError, match="not importable"):
        jubako.models.torch.save("x", local(), factory=local, store=store)
    with pytest.raises(JubakoError, match="cannot import model factory"):
        jubako.models.torch.save("x", local(), factory="nowhere:build", store=store)
    with pytest.raises(JubakoError, match="either factory"):
        jubako.models.torch.save("x", local(), store=store)
    assert store.models.list() == []


def tiny_onnx() -> onnx.ModelProto:
    """y = x @ W + b, with a free batch dimension."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [1, 2, 3, 4, 5, 6])
    b = helper.make_tensor("b", TensorProto.FLOAT, [2], [0.5, -0.5])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_onnx_round_trip_reads_signatures(store: Store, tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_onnx(), str(path))
    bundle = jubako.models.onnx.save("lin", path, store=store)
    m = bundle.manifest
    assert [(s.name, s.dtype, s.shape) for s in m.inputs] == [("x", "float32", ["batch", 3])]
    assert [(s.name, s.shape) for s in m.outputs] == [("y", ["batch", 2])]
    model = jubako.models.load("lin", store=store)
    assert model.providers == ["CPUExecutionProvider"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = x @ np.array([[1, 2], [3, 4], [5, 6]], np.float32) + np.array([0.5, -0.5], np.float32)
    np.testing.assert_allclose(model(x), expected)
    # the same model given as a ModelProto and as bytes
    assert jubako.models.onnx.save("lin", tiny_onnx(), store=store).manifest.files == m.files
    jubako.models.onnx.save("lin", tiny_onnx().SerializeToString(), store=store)


def test_invalid_onnx_is_refused(store: Store) -> None:
    broken = tiny_onnx()
    broken.graph.node[0].input[1] = "nothing"
    with pytest.raises(JubakoError, match="invalid ONNX model"):
        jubako.models.onnx.save("bad", broken, store=store)


def test_device_override_is_checked(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    jubako.models.onnx.save("lin", tiny_onnx(), store=store)
    monkeypatch.setenv("JUBAKO_DEVICE", "tpu")
    with pytest.raises(JubakoError, match="JUBAKO_DEVICE='tpu'"):
        jubako.models.load("lin", store=store)
    if not torch.cuda.is_available():
        monkeypatch.setenv("JUBAKO_DEVICE", "cuda")
        with pytest.raises(JubakoError, match="no CUDAExecutionProvider"):
            jubako.models.load("lin", store=store)


def test_inside_a_bento_models_resolve_to_the_pinned_version(store: Store, tmp_path) -> None:
    old = jubako.models.onnx.save("lin", tiny_onnx(), version="v1", store=store)
    jubako.models.onnx.save("lin", tiny_onnx(), version="v2", store=store)
    from jubako.manifest import BentoManifest, utcnow

    pinned = BentoManifest(
        name="b", version="1", created_at=utcnow(), service="s:S",
        models=[ModelRef(tag="lin:v1", digest=old.manifest.digest())],
    )
    with jubako.models.bento_context(tmp_path, pinned, store):
        assert jubako.models.get("lin").tag.version == "v1"
        with pytest.raises(NotFound, match="pins model lin:v1, not lin:v2"):
            jubako.models.get("lin:v2")
        with pytest.raises(NotFound, match="does not reference model 'other'"):
            jubako.models.get("other")
    assert jubako.models.get("lin", store=store).tag.version == "v2"
    wrong = pinned.model_copy(update={"models": [ModelRef(tag="lin:v1", digest="sha256:" + "0" * 64)]})
    with jubako.models.bento_context(tmp_path, wrong, store), pytest.raises(InvalidBundle, match="digest differs"):
        jubako.models.get("lin")


def test_bento_contexts_on_several_threads_leave_none_behind(store: Store, tmp_path) -> None:
    """jubako run's in-process executor creates one service instance per thread, each inside a
    bento context: overlapping contexts on different threads must not leave one active after
    they all end (a process-wide variable did: the next models.get in the process resolved
    against a finished run's bento)."""
    import threading

    from jubako.manifest import BentoManifest, utcnow

    manifest = BentoManifest(name="b", version="1", created_at=utcnow(), service="s:S")
    first_in, first_out = threading.Event(), threading.Event()

    def first() -> None:
        with jubako.models.bento_context(tmp_path, manifest, store):
            first_in.set()
            time.sleep(0.2)  # the second thread enters meanwhile
        first_out.set()

    def second() -> None:
        first_in.wait(timeout=10)
        with jubako.models.bento_context(tmp_path, manifest, store):
            first_out.wait(timeout=10)  # ...and leaves after the first

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    with pytest.raises(NotFound) as e:
        jubako.models.get("absent", store=store)
    assert "does not reference" not in str(e.value), e.value
