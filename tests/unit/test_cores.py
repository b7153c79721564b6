"""A host's usable cores (parsed from cgroup files and the affinity), core claims in a real redis-server, the
runtime's threads set from the config, and where a measurement ran written on it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from podium.backends.host_cores import cgroup_quota
from podium.coordination.cores import CoreClaims, host_usage
from podium.core.cores import (
    Placement,
    cgroup_path,
    cores_needed,
    format_core_list,
    oversubscribed,
    parse_cfs,
    parse_core_list,
    parse_cpu_max,
    usable_cores,
)
from podium.core.validation import parse_model
from podium.errors import CoresBusy
from podium.measurement.measure import Measured
from podium.workers.placement import CoreBudget, record_placement
from tests.servers import start_redis, wait_until

# ---------------------------------------------------------------- parsing (pure)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("150000 100000\n", 1.5),
        ("200000 100000", 2.0),
        ("50000", 0.5),
        ("", None),
        ("x y", None),
    ],
)
def test_cgroup_v2_cpu_max(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"), [("-1\n", "100000\n", None), ("50000\n", "100000\n", 0.5), ("300000", "100000", 3.0)]
)
def test_cgroup_v1_cfs_quota(quota: str, period: str, cpus: float | None) -> None:
    assert parse_cfs(quota, period) == cpus


def test_cgroup_path_v1_then_v2() -> None:
    v1 = "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    assert cgroup_path(v1) == "/docker/abc"
    assert cgroup_path("0::/system.slice/podium.service\n") == "/system.slice/podium.service"
    assert cgroup_path("4:memory:/x\n") is None


@pytest.mark.parametrize(
    ("affinity", "quota", "usable"),
    [({3, 1, 0, 2}, None, [0, 1, 2, 3]), ({0, 1, 2, 3}, 1.5, [0]), ({4, 5}, 0.2, [4]), ({0, 1, 2, 3}, 2.0, [0, 1])],
)
def test_usable_cores_are_the_affinity_cut_to_the_quota(affinity: set[int], quota, usable: list[int]) -> None:
    assert usable_cores(affinity, quota) == usable


@given(st.sets(st.integers(min_value=0, max_value=200), max_size=40))
def test_core_lists_round_trip(cores: set[int]) -> None:
    assert parse_core_list(format_core_list(cores)) == sorted(cores)


def test_core_list_format() -> None:
    assert format_core_list([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert parse_core_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    with pytest.raises(ValueError, match="bad core range"):
        parse_core_list("3-1")


def test_threads_beyond_the_host_are_oversubscribed() -> None:
    assert cores_needed(4, [0, 1]) == 2 and oversubscribed(4, [0, 1]) == "4 threads on a host with 2 usable core(s)"
    assert cores_needed(1, [0, 1]) == 1 and oversubscribed(2, [0, 1]) == ""


# ---------------------------------------------------------------- reading the cgroup files


def test_quota_read_from_the_process_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "proc").write_text("0::/kubepods/pod1\n")
    (tmp_path / "kubepods/pod1").mkdir(parents=True)
    (tmp_path / "kubepods/pod1/cpu.max").write_text("250000 100000\n")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path, tmp_path / "proc") == 2.5


def test_quota_read_from_cgroup_v1_and_none_without_files(tmp_path: Path) -> None:
    (tmp_path / "proc").write_text("3:cpu,cpuacct:/docker/abc\n")
    v1 = tmp_path / "cpu,cpuacct/docker/abc"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path, tmp_path / "proc") == 1.0
    assert cgroup_quota(tmp_path / "none", tmp_path / "missing") is None


# ---------------------------------------------------------------- claims in a real redis-server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def client(redis_url: str):
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    c.flushall()
    yield c
    c.close()


def test_claims_never_overlap_and_are_all_or_nothing(client: redis.Redis) -> None:
    a, b, c = (CoreClaims(client, "host1", f"w{i}") for i in range(3))
    first, second = a.claim(1, [0, 1]), b.claim(1, [0, 1])
    assert first and second and set(first.cores).isdisjoint(second.cores)
    assert not first.contended and not second.contended
    assert c.claim(1, [0, 1]) is None  # both cores held: nothing taken
    a.release(first)
    assert c.claim(2, [0, 1]) is None  # one free, two needed: nothing taken
    third = c.claim(1, [0, 1])
    assert third and third.cores == first.cores
    assert CoreClaims(client, "host2", "w9").claim(2, [0, 1])  # another host has cores of its own


def test_a_contended_claim_takes_what_is_free_and_flags_every_sharer(client: redis.Redis) -> None:
    a, b, c = (CoreClaims(client, "h", f"w{i}") for i in range(3))
    held = a.claim(1, [0, 1])
    late = b.claim(2, [0, 1], shared=True)
    assert held and late and late.contended and set(late.cores) == {0, 1} - set(held.cores)
    assert c.claim(1, [0, 1]) is None  # a contended run is on the host: a waiting claim waits
    shared = c.claim(1, [0, 1], shared=True)
    assert shared and shared.contended and shared.cores == ()
    b.release(late)
    c.release(shared)
    assert c.claim(1, [0, 1]) is not None  # nobody contends any more


def test_concurrent_claims_never_take_the_same_core(client: redis.Redis, redis_url: str) -> None:
    got: list[tuple[int, ...]] = []
    start = threading.Barrier(16)

    def claim(i: int) -> None:
        own = redis.Redis.from_url(redis_url, decode_responses=True)
        start.wait()
        claimed = CoreClaims(own, "busy", f"w{i}").claim(1, list(range(8)))
        if claimed is not None:
            got.append(claimed.cores)
        own.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cores = [c for claimed in got for c in claimed]
    assert len(got) == 8 and sorted(cores) == list(range(8))


def test_a_dead_workers_cores_come_back_and_a_live_one_keeps_them(client: redis.Redis) -> None:
    # the dead claim lapses in 0.3 s; the live one, renewed every second, outlives a 2 s stall of a loaded host
    dead, live = CoreClaims(client, "h", "dead", ttl_ms=300), CoreClaims(client, "h", "live", ttl_ms=3000)
    lost = dead.claim(1, [0, 1])
    kept = live.claim(1, [0, 1])
    assert lost and kept
    watchdog = live.watchdog(kept).start()  # renews every second
    try:
        newcomer = CoreClaims(client, "h", "new")
        assert wait_until(lambda: (late := newcomer.claim(1, [0, 1])) is not None and late.cores == lost.cores, 10)
        assert newcomer.claim(1, [0, 1]) is None  # the live worker's core stayed its own
        assert not dead.renew(lost) and not watchdog.lapsed
    finally:
        watchdog.stop()


def test_host_usage_for_status(client: redis.Redis) -> None:
    claims = CoreClaims(client, "gpu-box", "gpu-box:77")
    claims.announce([0, 1, 2, 3])
    claims.claim(2, [0, 1, 2, 3])
    (host,) = host_usage(client)
    assert host["host"] == "gpu-box" and host["usable"] == "0-3" and host["usable_count"] == 4
    assert [c["core"] for c in host["claimed"]] == [0, 1]
    assert {c["worker"] for c in host["claimed"]} == {"gpu-box:77"} and host["contended"] == []


# ---------------------------------------------------------------- a worker's budget: claim, pin, record


def bench_cfg(**benchmarking):
    from podium.core.config import BenchmarkingSection

    return parse_model(BenchmarkingSection, benchmarking, "test")


def test_a_measurement_is_pinned_to_its_cores_and_gives_them_back(client: redis.Redis) -> None:
    home = sorted(os.sched_getaffinity(0))
    budget = CoreBudget(CoreClaims(client, "h", "me"), home[:2], home)
    other = CoreClaims(client, "h", "other")
    with budget.place(bench_cfg(threads=1)) as placement:
        assert placement.pinned and sorted(os.sched_getaffinity(0)) == list(placement.cores)
        assert len(placement.cores) == 1 and not placement.contended
        if len(home) >= 2:  # the other core is free for another worker, this one is not
            taken = other.claim(1, home[:2])
            assert taken and set(taken.cores).isdisjoint(placement.cores)
            other.release(taken)
    assert sorted(os.sched_getaffinity(0)) == home
    assert host_usage(client)[0]["claimed"] == []


def test_busy_cores_wait_or_run_contended(client: redis.Redis) -> None:
    usable = sorted(os.sched_getaffinity(0))[:1]
    budget = CoreBudget(CoreClaims(client, "h", "me"), usable, sorted(os.sched_getaffinity(0)))
    holder = CoreClaims(client, "h", "other").claim(1, usable)
    assert holder
    with pytest.raises(CoresBusy, match="busy_cores: contended"), budget.place(bench_cfg(threads=1)):
        pass
    with budget.place(bench_cfg(threads=1, busy_cores="contended")) as placement:
        assert placement.contended and "shares cores" in placement.why_contended
    with budget.place(bench_cfg(threads=3, busy_cores="contended")) as placement:
        assert placement.why_contended == "3 threads on a host with 1 usable core(s)"


def test_placement_is_written_on_the_run() -> None:
    measured = Measured({"m": 1.0}, {"device": {"kind": "cpu"}}, "Xeon | torch 2")
    calm = Placement("h", 1, (1,), (0, 1), True)
    record = {"cpu": "Xeon", "affinity": [1]} | calm.as_dict()
    out = record_placement(measured, calm, record)
    assert out.summary["device"]["placement"]["cores"] == [1] and out.device == "Xeon | torch 2"
    busy = Placement("h", 4, (0, 1), (0, 1), True, "4 threads on a host with 2 usable core(s)")
    flagged = record_placement(measured, busy, busy.as_dict())
    assert flagged.device.endswith("| contended: 4 threads on a host with 2 usable core(s)")
    assert flagged.summary["device"]["placement"]["contended"] is True


# ---------------------------------------------------------------- the runtime's threads


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_threads_inside_the_measurement_equal_the_config(tmp_path: Path, threads: int) -> None:
    torch = pytest.importorskip("torch")
    from podium.backends.torchscript import TorchScriptBackend
    from podium.core.config import BenchmarkConfig
    from podium.demo.model import TinyTagger, export
    from podium.measurement.measure import run_measurement

    model = export(TinyTagger(8, 1), tmp_path / "model.pt")
    config = parse_model(
        BenchmarkConfig,
        {"benchmarking": {"threads": threads, "iterations": 3, "warmup_iterations": 1, "max_length": 8}},
        "test",
    )
    torch.set_num_threads(3 - threads)  # something else before the measurement
    seen: set[int] = set()
    measured = run_measurement(
        TorchScriptBackend(model, "cpu", threads=threads), config, progress=lambda *_: seen.add(torch.get_num_threads())
    )
    assert seen == {threads}
    assert measured.summary["device"]["threads"] == threads
    assert os.environ["OMP_NUM_THREADS"] == str(threads)
    assert measured.summary["device"]["affinity"] == sorted(os.sched_getaffinity(0))


def test_onnx_session_threads_come_from_the_config(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from podium.backends.onnx import OnnxBackend

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    backend = OnnxBackend(path, "cpu", threads=2)
    backend.prepare()
    assert backend.session.get_session_options().intra_op_num_threads == 2
    assert backend.bind({"x": np.ones((1, 4), np.float32)})() is not None
    assert backend.describe().details["threads"] == 2


def test_the_gpu_a_worker_sees_is_written_on_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from podium.workers.placement import where_measured

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    record = where_measured(Placement("h", 1, (0,), (0, 1), True))
    assert record["cuda_visible_devices"] == "3" and record["cores"] == [0] and record["cpu"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert where_measured(None)["cuda_visible_devices"] is None
