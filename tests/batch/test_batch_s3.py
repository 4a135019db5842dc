"""S3 input and output through moto's server on 127.0.0.1, with the registry's settings
(JUBAKO_REGISTRY_S3_*)."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from jubako.batch import Options, run, storage

from .conftest import feature_table, features


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JUBAKO_REGISTRY_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("JUBAKO_REGISTRY_S3_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("JUBAKO_REGISTRY_S3_SECRET_ACCESS_KEY", "testing")
    storage.reset_client()
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="scores")
    yield client
    storage.reset_client()


def test_s3_parquet_in_parquet_out(s3, torch_bento: str, tmp_path: Path) -> None:
    x = features(700, seed=4)
    buf = io.BytesIO()
    pq.write_table(feature_table(x), buf, row_group_size=100)
    s3.put_object(Bucket="scores", Key="in/features.parquet", Body=buf.getvalue())
    local = tmp_path / "local.parquet"
    local.write_bytes(buf.getvalue())
    summary = run(Options(bento=torch_bento, api="predict", input="s3://scores/in/features.parquet",
                          output="s3://scores/out/pred.parquet", keep_columns=["id"], chunk_rows=256,
                          progress=False))
    assert (summary.rows, summary.failed, summary.chunks) == (700, 0, 3)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="scores")["Contents"]]
    assert sorted(keys) == ["in/features.parquet", "out/pred.parquet"]  # parts removed
    got = pq.read_table(io.BytesIO(s3.get_object(Bucket="scores", Key="out/pred.parquet")["Body"].read()))
    # the same as a local run of the same file
    run(Options(bento=torch_bento, api="predict", input=str(local), output=str(tmp_path / "out.parquet"),
                keep_columns=["id"], chunk_rows=256, progress=False))
    assert got.equals(pq.read_table(tmp_path / "out.parquet"))
    # no --chunk-rows: the chunk size from the object's Parquet footer (ranged reads), one chunk here
    summary = run(Options(bento=torch_bento, api="predict", input="s3://scores/in/features.parquet",
                          output="s3://scores/out/default.parquet", keep_columns=["id"], progress=False))
    assert (summary.rows, summary.chunks) == (700, 1)
    again = pq.read_table(io.BytesIO(s3.get_object(Bucket="scores", Key="out/default.parquet")["Body"].read()))
    assert again.equals(got)


def test_s3_jsonl_in_csv_out_with_errors_and_resume(s3, onnx_bento: str) -> None:
    rows = [orjson.dumps({"x": r.tolist()}) for r in features(300, seed=5)]
    rows[10] = b'{"x": [1, 2]}'
    s3.put_object(Bucket="scores", Key="in/rows.jsonl", Body=b"\n".join(rows) + b"\n")
    opts = Options(bento=onnx_bento, input="s3://scores/in/rows.jsonl", output="s3://scores/out/p.csv",
                   chunk_rows=100, progress=False)
    # an interrupted run's first chunk, as it would have left it
    parts = storage.Parts(opts.output)
    summary = run(opts)
    assert (summary.rows, summary.failed) == (300, 1)
    full = s3.get_object(Bucket="scores", Key="out/p.csv")["Body"].read()
    errors = s3.get_object(Bucket="scores", Key="out/p.csv.errors.jsonl")["Body"].read()
    assert orjson.loads(errors.splitlines()[0])["row"] == 11
    lines = full.decode().splitlines()
    assert lines[0] == '"predict_0","predict_1","predict_2","predict_3"' and len(lines) == 301
    assert lines[11] == ",,,"
    # resume: keep the first chunk of a fresh run, then run again
    s3.delete_object(Bucket="scores", Key="out/p.csv")
    s3.delete_object(Bucket="scores", Key="out/p.csv.errors.jsonl")
    import jubako.batch.runner as runner

    calls = {"n": 0}
    real = runner._commit

    async def stop_after_first(job, scored, progress):  # type: ignore[no-untyped-def]
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return await real(job, scored, progress)

    runner._commit = stop_after_first  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            run(opts)
    finally:
        runner._commit = real  # type: ignore[assignment]
    assert "done-000000.json" in parts.list() and "done-000001.json" not in parts.list()
    assert not storage.exists(opts.output)
    summary = run(opts)
    assert (summary.resumed_chunks, summary.failed) == (1, 1)
    assert s3.get_object(Bucket="scores", Key="out/p.csv")["Body"].read() == full
    assert np.isclose(sum(float(v) for v in lines[1].split(",")), 1.0, atol=1e-4)
