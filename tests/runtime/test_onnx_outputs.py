"""OnnxModel's output contract: ``model(x)`` is the one output's array; a model with several
outputs is called with ``model.outputs(x)`` (by name), never a bare list by accident."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import jubako
from jubako.errors import JubakoError
from jubako.store import Store


def two_outputs() -> object:
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["neg"]), helper.make_node("Abs", ["x"], ["abs"])],
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("abs", TensorProto.FLOAT, ["batch", 2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def one_output() -> object:
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["neg"])], "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["batch", 2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_single_output_model_returns_its_array(store: Store) -> None:
    jubako.models.onnx.save("one", one_output(), store=store)
    model = jubako.models.load("one", store=store)
    x = np.array([[1.0, -2.0]], np.float32)
    out = model(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, -x)
    assert list(model.outputs(x)) == ["neg"]


def test_multi_output_model_answers_by_name_and_refuses_a_bare_call(store: Store) -> None:
    jubako.models.onnx.save("two", two_outputs(), store=store)
    model = jubako.models.load("two", store=store)
    x = np.array([[1.0, -2.0]], np.float32)
    with pytest.raises(JubakoError, match=r"2 outputs \(neg, abs\).*outputs\("):
        model(x)
    outs = model.outputs(x)
    assert list(outs) == ["neg", "abs"]
    np.testing.assert_array_equal(outs["neg"], -x)
    np.testing.assert_array_equal(outs["abs"], np.abs(x))
    with pytest.raises(JubakoError, match=r"takes 1 input \(x\), got 2"):
        model.outputs(x, x)
