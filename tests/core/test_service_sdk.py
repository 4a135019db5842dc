from typing import Annotated

import numpy as np
import pytest
from pydantic import BaseModel

import jubako
from jubako import Tensor, TorchTensor
from jubako.errors import ServiceDefinitionError
from jubako.io import spec_for
from jubako.manifest import BytesSpec, JSONSpec, TensorSpec, TextSpec


class Item(BaseModel):
    text: str
    weight: float = 1.0


@pytest.mark.parametrize(
    "annotation, batchable, expected",
    [
        (Tensor[np.float32, (None, 4)], True, TensorSpec(dtype="float32", shape=[None, 4])),
        (Tensor[np.int64, (2, 3)], False, TensorSpec(dtype="int64", shape=[2, 3])),
        (TorchTensor[np.float16, (None, 3, 64, 64)], True,
         TensorSpec(dtype="float16", shape=[None, 3, 64, 64], container="torch")),
        (str, False, TextSpec()),
        (bytes, False, BytesSpec()),
    ],
)
def test_specs_from_annotations(annotation: object, batchable: bool, expected: object) -> None:
    assert spec_for(annotation, batchable=batchable, where="x") == expected


def test_pydantic_models_give_their_schema_and_import_path() -> None:
    spec = spec_for(list[Item], batchable=True, where="x")
    assert isinstance(spec, JSONSpec)
    assert spec.json_schema["type"] == "array"
    assert "Item" in spec.json_schema["$defs"]
    assert spec.model == f"{__name__}:Item"
    single = spec_for(Item, batchable=False, where="x")
    assert single.json_schema["required"] == ["text"]


@pytest.mark.parametrize(
    "annotation, batchable, words",
    [
        (Tensor[np.float32, (4,)], True, "free first"),
        (Tensor[np.float32, (4, None)], True, "free first"),
        (bytes, True, "cannot be batched"),
        (Item, True, "takes and returns a batch"),
        (str, True, "takes and returns a batch"),
        (np.ndarray, False, "say the dtype and shape"),
        (Annotated[int, "meta"], True, "takes and returns a batch"),
    ],
)
def test_bad_annotations_are_explained(annotation: object, batchable: bool, words: str) -> None:
    with pytest.raises(ServiceDefinitionError, match=words):
        spec_for(annotation, batchable=batchable, where="svc.api")


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ServiceDefinitionError, match="dtype"):
        Tensor["floaty", (None,)]


def test_service_collects_apis() -> None:
    @jubako.service(name="demo", models=["m1", "m2:v3"])
    class Demo:
        @jubako.api(batchable=True, max_batch_size=32, max_latency_ms=10)
        def predict(self, x: Tensor[np.float32, (None, 4)]) -> Tensor[np.float32, (None,)]:
            """Sum rows."""
            return x.sum(axis=1)

        @jubako.api
        async def echo(self, text: str) -> str:
            return text

        @jubako.api(name="score")
        def _score(self, items: Item) -> float:
            return items.weight

        def helper(self) -> None:  # not an API
            pass

    assert isinstance(Demo, jubako.Service)
    assert sorted(Demo.apis) == ["echo", "predict", "score"]
    assert [str(t) for t in Demo.models] == ["m1:latest", "m2:v3"]
    predict = Demo.apis["predict"]
    assert predict.batchable and predict.max_batch_size == 32 and not predict.is_async
    spec = predict.spec()
    assert spec.batching is not None and spec.batching.max_latency_ms == 10
    assert spec.route == "/predict" and spec.doc == "Sum rows."
    assert Demo.apis["echo"].is_async and Demo.apis["echo"].spec().batching is None
    instance = Demo.create()
    assert Demo.apis["predict"].func(instance, np.ones((2, 4), np.float32)).tolist() == [4.0, 4.0]


def test_service_definition_errors() -> None:
    with pytest.raises(ServiceDefinitionError, match="no method"):
        @jubako.service
        class Empty:
            pass

    with pytest.raises(ServiceDefinitionError, match="exactly one input"):
        @jubako.service
        class TwoInputs:
            @jubako.api
            def f(self, a: str, b: str) -> str:
                return a + b

    with pytest.raises(ServiceDefinitionError, match="missing type annotation"):
        @jubako.service
        class Untyped:
            @jubako.api
            def f(self, a) -> str:  # type: ignore[no-untyped-def]
                return a

    with pytest.raises(ServiceDefinitionError, match="two APIs"):
        @jubako.service
        class Twice:
            @jubako.api(name="f")
            def a(self, x: str) -> str:
                return x

            @jubako.api(name="f")
            def b(self, x: str) -> str:
                return x

    with pytest.raises(ServiceDefinitionError, match="invalid service name"):
        jubako.service(name="Bad Name")(type("X", (), {}))

    with pytest.raises(ServiceDefinitionError, match="max_batch_size"):
        jubako.api(max_batch_size=0)
