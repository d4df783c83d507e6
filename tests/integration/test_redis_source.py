"""data.uri redis://host:port/db?key=… against a real redis-server on a free loopback port: a list of
JSON records, a stream and a hash of CSV text as load sources, each refusal, the data fingerprint, and
submit.py end to end (changed Redis data re-runs load)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from components.errors import DataError
from components.steps.load import load, read_info
from tests.conftest import DATA, ROOT, free_port, make_recipe, start_process, stop_process

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed (apt-get install redis-server; .ci/run does)")]
redis = pytest.importorskip("redis", reason="the redis client is in the data extra: pip install -e '.[data]'")


def _start_redis(tmp_path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = start_process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(tmp_path), *extra], tmp_path / "redis.log")
    client = redis.Redis(port=port, password=extra[-1] if "--requirepass" in extra else None)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                raise RuntimeError(f"redis-server did not start:\n{(tmp_path / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, port = _start_redis(tmp_path_factory.mktemp("redis"))
    yield port
    stop_process(proc)


@pytest.fixture()
def r(server, tmp_path, monkeypatch):
    """A client on a flushed db; the platform's cache in this test's directory."""
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    client = redis.Redis(port=server)
    client.flushdb()
    yield client
    client.close()


def uri(r, key: str, **query) -> str:
    port = r.connection_pool.connection_kwargs["port"]
    return f"redis://127.0.0.1:{port}/0?key={key}" + "".join(f"&{k}={v}" for k, v in query.items())


def load_table(tmp_path, data_uri: str, **data) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "out" / "raw.parquet"
    load(make_recipe(data={"uri": data_uri, "target": "y", "sample_rows": None, **data}), out)
    return pd.read_parquet(out), read_info(str(out))


ROWS = [{"x": 1.5, "city": "Oslo", "y": 10}, {"x": 2.5, "city": "Rome", "y": 20}, {"x": None, "city": "Lima", "y": 30}]


def test_a_list_of_json_records_is_a_table_read_in_chunks(r, tmp_path, monkeypatch):
    import components.redis_source as source

    monkeypatch.setattr(source, "CHUNK", 2)  # three elements: two LRANGE pages
    r.rpush("houses", *(json.dumps(row) for row in ROWS))
    df, info = load_table(tmp_path, uri(r, "houses"))
    assert df.to_dict("records")[:2] == ROWS[:2] and pd.isna(df["x"][2])
    assert df["x"].dtype == float and df["y"].dtype == "int64"
    from pipelines.pipeline import _local_data_fingerprint

    assert _local_data_fingerprint(uri(r, "houses")) == f"data-{info['data_hash']}", "one hash for cache and record"


def test_a_stream_entry_is_a_row_its_fields_columns_or_a_json_field(r, tmp_path, monkeypatch):
    import components.redis_source as source

    monkeypatch.setattr(source, "CHUNK", 2)
    r.xadd("events", {"x": "1.5", "city": "Oslo", "y": "10"})
    r.xadd("events", {"json": json.dumps(ROWS[1])})
    r.xadd("events", {"data": json.dumps({"x": 3.5, "city": "Lima", "y": 30})})
    df, _ = load_table(tmp_path, uri(r, "events"))
    assert list(df.columns) == ["x", "city", "y"]
    assert df["city"].tolist() == ["Oslo", "Rome", "Lima"] and df["y"].astype(int).tolist() == [10, 20, 30]


def test_a_hash_of_csv_is_read_in_field_order_or_one_field(r, tmp_path):
    r.hset("parts", mapping={"b-2024": "x,city,y\n3.5,Lima,30\n", "a-2023": "x,city,y\n1.5,Oslo,10\n2.5,Rome,20\n"})
    df, info = load_table(tmp_path, uri(r, "parts"))
    assert df["city"].tolist() == ["Oslo", "Rome", "Lima"] and len(info["files"]) == 2
    df, _ = load_table(tmp_path, uri(r, "parts", field="b-2024"))
    assert df["city"].tolist() == ["Lima"]
    r.hdel("parts", "b-2024")
    df, info = load_table(tmp_path, uri(r, "parts"))
    assert len(df) == 2 and len(info["files"]) == 1, "a field deleted in Redis leaves no stale file in the cache"


def _refusal(tmp_path, data_uri: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_table(tmp_path, data_uri)
    assert not (tmp_path / "out" / "raw.parquet").exists(), "a refused load writes no output"


@pytest.mark.parametrize("setup, query, match", [
    (lambda r: None, {}, r"Redis key 'k' \(db 0 at 127\.0\.0\.1:\d+\) does not exist; expected a list of JSON"),
    (lambda r: r.sadd("k", "a"), {}, r"Redis key 'k' .* is a set; expected a list of JSON records, a stream or a hash"),
    (lambda r: r.set("k", "{}"), {}, r"Redis key 'k' .* is a string; expected a list"),
    (lambda r: r.rpush("k", '{"y": 1}', '{"y": 2', '{"y": 3}'), {},
     r"Redis key 'k' .*: element 1 is not valid JSON \(.*\); expected one JSON object per row"),
    (lambda r: r.rpush("k", '{"y": 1}', "[1, 2]"), {}, r"element 1 is a JSON list, not an object"),
    (lambda r: r.xadd("k", {"json": "{oops"}), {}, r"entry \d+-\d+ \(field 'json'\) is not valid JSON"),
    (lambda r: (r.xadd("k", {"y": "1"}), r.xtrim("k", maxlen=0)), {}, r"Redis key 'k' .* is an empty stream"),
    (lambda r: r.hset("k", "a", "y\n1\n"), {"field": "b"}, r"Redis key 'k' .* has no field 'b'; its fields are \['a'\]"),
    (lambda r: r.hset("k", "a", "  \n"), {}, r"field 'a' is empty; expected CSV text"),
    (lambda r: r.rpush("k", '{"y": 1}'), {"field": "a"}, r"field= names a hash field, but the key is a list"),
])
def test_each_refusal_names_the_key_and_what_was_expected(r, tmp_path, setup, query, match):
    setup(r)
    _refusal(tmp_path, uri(r, "k", **query), match)


def test_a_bad_uri_and_an_unreachable_server_are_named(r, tmp_path):
    _refusal(tmp_path, uri(r, "k").split("?")[0], r"no key=; expected redis://\[\[user\]:password@\]host")
    _refusal(tmp_path, uri(r, "k", db="1"), r"unknown parameter\(s\) \['db'\]")
    port = free_port()
    _refusal(tmp_path, f"redis://127.0.0.1:{port}/0?key=k",
             rf"cannot reach Redis at 127\.0\.0\.1:{port} to read key 'k': ConnectionError")


def test_the_password_comes_from_the_uri_or_redis_password(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    proc, port = _start_redis(tmp_path, "--requirepass", "s3cret")
    try:
        redis.Redis(port=port, password="s3cret").rpush("k", *(json.dumps(row) for row in ROWS))
        plain = f"redis://127.0.0.1:{port}/0?key=k"
        _refusal(tmp_path, plain, rf"Redis at 127\.0\.0\.1:{port} wants a password and none was given .*"
                                        r"expected it in the URI \(redis://:PASSWORD@host\) or in REDIS_PASSWORD")
        _refusal(tmp_path, f"redis://:wrong@127.0.0.1:{port}/0?key=k", "refused the password given")
        assert len(load_table(tmp_path, f"redis://:s3cret@127.0.0.1:{port}/0?key=k")[0]) == 3
        monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
        assert len(load_table(tmp_path, plain)[0]) == 3
    finally:
        stop_process(proc)


def test_the_fingerprint_follows_the_data_and_unread_data_is_never_cached(r, tmp_path):
    from kfp import compiler
    import yaml

    from pipelines.pipeline import ClusterConfig, _local_data_fingerprint, make_pipeline

    r.rpush("houses", *(json.dumps(row) for row in ROWS))
    first = _local_data_fingerprint(uri(r, "houses"))
    assert first and _local_data_fingerprint(uri(r, "houses")) == first
    r.lset("houses", 1, json.dumps({**ROWS[1], "y": 21}))  # same length, one value changed in place
    assert _local_data_fingerprint(uri(r, "houses")) not in (None, first)

    def load_caching(data_uri: str) -> dict:
        path = tmp_path / "pipeline.yaml"
        compiler.Compiler().compile(make_pipeline(make_recipe(data={"uri": data_uri}), ClusterConfig.local()),
                                    str(path))
        return yaml.safe_load(path.read_text())["root"]["dag"]["tasks"]["load-data"]["cachingOptions"]

    assert load_caching(uri(r, "houses")) == {"enableCache": True}
    from pipelines.submit import stage_data

    recipe = make_recipe(data={"uri": uri(r, "houses")})
    assert stage_data(recipe) is recipe, "a cluster reads the key where it is: nothing to upload"
    assert load_caching(f"redis://127.0.0.1:{free_port()}/0?key=houses") == {}, \
        "a key this machine cannot read may have changed: load is not served from cache"


@pytest.mark.e2e
@pytest.mark.heavy
def test_submit_trains_from_redis_and_changed_data_reruns_load(r, tmp_path):
    rows = pd.read_parquet(DATA / "california_housing.parquet").head(3000).to_dict("records")
    r.rpush("housing", *(json.dumps(row) for row in rows))
    env = {**os.environ, "PLATFORM_HOME": str(tmp_path / "home"), "PLATFORM_ARTIFACT_ROOT": str(tmp_path / "art"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}

    def submit(name: str) -> str:
        done = subprocess.run([sys.executable, "pipelines/submit.py", "--set", f"data.uri={uri(r, 'housing')}",
                               "--set", "train.epochs=2", "--set", "model.params.hidden_sizes=[8]",
                               "--set", "evaluate.gate=['rmse <= 0.0001']", "--set", "register.model_name=redis-housing"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        (tmp_path / f"{name}.log").write_text(done.stdout + done.stderr)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return next(line for line in done.stdout.splitlines() if line.startswith("from cache:"))

    assert "nothing" in submit("first")
    assert "load" in submit("same").split(":", 1)[1].split(", "), "unchanged Redis data: load served from cache"
    r.lset("housing", 0, json.dumps({**rows[0], "MedHouseVal": rows[0]["MedHouseVal"] + 1}))
    cached = submit("changed").split(":", 1)[1].strip().split(", ")
    assert "load" not in cached and "preprocess" not in cached, f"changed Redis data came from cache: {cached}"
