"""The Ray runner's parts that need no cluster: frame wire format, dynamic batching, fp16 graph, GPU fallback.

Real frames (the bundled PETS video), the real network (int8 where its plan ships, else fp32)
on small frames so the file stays fast on 2 cores.
"""

from __future__ import annotations

import json
import threading
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from crowdsafe.counting.counter import DensityCounter, ImageError
from crowdsafe.counting.engines import EngineSpec, EngineUnavailable, create_engine, model_path
from crowdsafe.counting.weights import WeightsError
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.ray.batching import DynamicBatcher
from crowdsafe.runtime.ray.cluster import ClusterError, check_address
from crowdsafe.runtime.ray.gpu import cpu_spec, cuda_available, fp16_model_path, replica_engine
from crowdsafe.runtime.ray.replica import CountReplica, ReplicaSpec
from crowdsafe.runtime.ray.wire import WireError, decode_image, decode_sample, encode_sample

VIDEO = Path(str(resources.files("crowdsafe") / "data" / "vtest.avi"))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Frames 0, 10, 20, 30 of the bundled 768x576 video."""
    cap = cv2.VideoCapture(str(VIDEO))
    out = []
    for i in range(31):
        ok, frame = cap.read()
        assert ok
        if i % 10 == 0:
            out.append(frame)
    cap.release()
    return out


@pytest.fixture
def small_counter(fast_counter: DensityCounter) -> DensityCounter:
    """The session's int8 (else fp32) counter from conftest: no engine of this file's own."""
    return fast_counter


def small(image: np.ndarray, width: int = 256) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


# -- wire --------------------------------------------------------------------------------------

def test_wire_formats_round_trip_and_jpeg_is_a_fraction_of_raw(frames: list[np.ndarray]):
    image, pair = frames[0], frames[1]
    sample = Sample("cam", 123.5, image, pair, 0.1)
    raw = encode_sample(sample, "raw")
    assert raw.nbytes == 2 * image.nbytes
    back = decode_sample(raw)
    assert np.array_equal(back.image, image) and np.array_equal(back.pair, pair)
    png = encode_sample(sample, "png")
    assert np.array_equal(decode_sample(png).image, image)  # lossless
    assert png.nbytes < raw.nbytes
    jpeg = encode_sample(sample, "jpeg", quality=90)
    assert jpeg.nbytes < raw.nbytes / 8
    decoded = decode_sample(jpeg)
    assert decoded.image.shape == image.shape and decoded.pair_dt == 0.1 and decoded.ts == 123.5
    assert np.abs(decoded.image.astype(int) - image).mean() < 4  # grey levels, of 255


def test_wire_resizes_to_the_calibration_and_drops_an_unneeded_pair(frames: list[np.ndarray]):
    sample = Sample("cam", 1.0, frames[0], frames[1], 0.1)
    wire = encode_sample(sample, "jpeg", size=(384, 288), keep_pair=False)
    assert wire.pair is None and wire.pair_dt is None
    assert wire.shape == (288, 384, 3)
    assert decode_sample(wire).image.shape == (288, 384, 3)


def test_wire_refuses_garbage_with_a_clear_error():
    with pytest.raises(WireError, match="does not decode"):
        decode_image(b"\xff\xd8 not a jpeg", "jpeg")
    with pytest.raises(WireError, match="not an array"):
        decode_image(b"abc", "raw")


def test_jpeg_transport_changes_the_count_by_under_two_percent(frames: list[np.ndarray],
                                                               small_counter: DensityCounter):
    """At full resolution (768x576, ~23 people): JPEG q90 moves the count by ~0.3 % on average."""
    image = frames[0]
    direct = small_counter.count(image).count
    via_wire = small_counter.count(decode_image(encode_sample(Sample("c", 0, image), "jpeg").image,
                                                "jpeg")).count
    assert abs(via_wire - direct) / direct < 0.02


# -- dynamic batching --------------------------------------------------------------------------

def test_concurrent_frames_are_batched_and_match_one_at_a_time(frames: list[np.ndarray],
                                                               small_counter: DensityCounter):
    images = [small(f) for f in frames] + [small(frames[0], 320)]  # two shapes: grouped apart
    alone = [small_counter.count(im).density for im in images]
    batcher = DynamicBatcher(small_counter, max_batch=8, max_wait_s=0.5)
    results: dict[int, tuple[np.ndarray, int]] = {}

    def ask(i: int) -> None:
        result, size = batcher.count(images[i])
        results[i] = (result.density, size)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    batcher.close()
    assert sorted(results) == list(range(len(images)))
    for i, (density, _) in results.items():
        assert density.shape == alone[i].shape
        assert abs(float(density.sum()) - float(alone[i].sum())) <= 1e-3 * max(float(alone[i].sum()), 1.0)
    assert max(size for _, size in results.values()) >= 2  # frames of different cameras shared a call
    assert results[len(images) - 1][1] == 1  # the odd-sized frame ran alone
    assert batcher.stats.frames == len(images) and batcher.stats.calls < len(images)


def test_batcher_refuses_a_bad_frame_in_the_caller_and_keeps_serving(frames: list[np.ndarray],
                                                                     small_counter: DensityCounter):
    batcher = DynamicBatcher(small_counter, max_batch=4, max_wait_s=0.01)
    with pytest.raises(ImageError, match="at least"):
        batcher.count(np.zeros((10, 10, 3), np.uint8))
    result, size = batcher.count(small(frames[0]))
    assert size == 1 and result.count > 0
    batcher.close()


# -- GPU path and its CPU fallback ---------------------------------------------------------------

def test_fp16_graph_keeps_float32_io_and_counts_within_half_a_percent(frames: list[np.ndarray]):
    """Checked on CPU with OpenVINO, which runs float16 ONNX graphs: the numbers a GPU would see."""
    ov = pytest.importorskip("openvino")
    try:
        fp32_path = model_path("fp32")
    except WeightsError as exc:
        pytest.skip(f"counting model unavailable ({exc})")
    path = fp16_model_path()
    assert path.is_file() and fp16_model_path() == path  # cached
    half = onnx.load(str(path))
    inits = {i.name: i.data_type for i in half.graph.initializer}
    assert inits["output_layer.weight"] == onnx.TensorProto.FLOAT16
    assert inits["pixel_mean"] == onnx.TensorProto.FLOAT  # normalisation stays float32
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert path.stat().st_size < 0.55 * fp32_path.stat().st_size
    core = ov.Core()
    image = small(frames[0], 384)
    batch = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
    counts = {}
    for name, p in (("fp32", fp32_path), ("fp16", path)):
        compiled = core.compile_model(str(p), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        counts[name] = float(np.asarray(compiled({"image": batch})[0]).sum())
    assert abs(counts["fp16"] - counts["fp32"]) / counts["fp32"] < 0.005


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA; the fallback is for machines without")
def test_gpu_replica_without_cuda_falls_back_to_cpu_and_says_why(frames: list[np.ndarray],
                                                                 small_counter: DensityCounter):
    spec = cpu_spec("fp16", threads=1)
    assert spec.precision == "fp32"  # fp16 is a GPU precision
    chosen = replica_engine("cuda", spec, "fp16")
    assert chosen.engine.device == "CPU" and "onnxruntime-gpu" in chosen.fallback
    assert replica_engine("auto", spec).fallback == ""  # auto: CPU is the expected answer here
    # A batching "GPU" replica on CPU counts like the plain CPU counter.
    replica = CountReplica(ReplicaSpec(cpu_spec(small_counter.engine.precision, threads=1), "cuda",
                                       max_batch=4, max_wait_s=0.01))
    image = small(frames[2])
    wire = encode_sample(Sample("cam", 5.0, image), "raw")
    counted = replica.count(wire)
    assert replica.info().fallback and counted.batch == 1
    expected = small_counter.count(image).count
    assert abs(float(counted.density.sum()) - expected) <= 1e-3 * expected


def test_cluster_address_forms():
    for ok in ("auto", "ray://10.0.0.5:10001", "head.example:6379", "127.0.0.1:6379"):
        assert check_address(ok) == ok
    for bad in ("", "ray://nohost", "http://x:1", "10.0.0.5", "host:99999"):
        with pytest.raises(ClusterError, match="not ray://HOST:PORT"):
            check_address(bad)


def test_a_replica_counts_each_camera_with_its_own_model(frames: list[np.ndarray]):
    """Per-camera models on a cluster: one replica holds both engines and uses the one asked for."""
    try:
        sparse = DensityCounter(create_engine(EngineSpec(model="sparse", precision="fp32", threads=1)))
    except (EngineUnavailable, WeightsError) as exc:
        pytest.skip(f"sparse model unavailable ({exc})")
    dense = DensityCounter(create_engine(EngineSpec(model="dense", precision="fp32", threads=1)))
    replica = CountReplica(ReplicaSpec(cpu_spec("fp32", threads=1), "cpu", models=("dense", "sparse")))
    image = small(frames[1], 384)
    wire = encode_sample(Sample("cam", 1.0, image), "raw")
    by_model = {m: float(replica.count(wire, m).density.sum()) for m in ("dense", "sparse", "auto")}
    assert by_model["dense"] == pytest.approx(dense.count(image).count, rel=1e-4)
    assert by_model["sparse"] == pytest.approx(sparse.count(image).count, rel=1e-4)
    assert by_model["sparse"] != pytest.approx(by_model["dense"], rel=0.05)  # really two models
    assert by_model["auto"] == pytest.approx(by_model["sparse"], rel=1e-4)  # a sparse street scene
    assert float(replica.count_image(image, "sparse").sum()) == pytest.approx(by_model["sparse"], rel=1e-4)
    with pytest.raises(ValueError, match="no 'sparse' model"):
        CountReplica(ReplicaSpec(cpu_spec("fp32", threads=1), "cpu")).count(wire, "sparse")


def test_cluster_replicas_load_the_models_the_site_calls_for():
    from types import SimpleNamespace

    from crowdsafe.config.site import load_site
    from crowdsafe.counting.tuning import load_tuning
    from crowdsafe.geometry.site import build_site_geometry
    from crowdsafe.runtime.plan import camera_models
    from crowdsafe.runtime.ray.runner import RayCounting

    site = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
    geometry = build_site_geometry(load_site(site))
    models = camera_models(geometry, tunings={})
    assert models == {"view001": "sparse"}  # auto, resolved from the calibration's person heights
    shipped = load_tuning(site.parent / "view001_tuning.json")
    tuned = camera_models(geometry, tunings={"view001": shipped})  # a tuning names its model, which wins
    assert tuned == {"view001": json.loads((site.parent / "view001_tuning.json").read_text())["model"]}

    def needed(models: dict[str, str]) -> tuple[str, ...]:
        return RayCounting.replica_models.fget(SimpleNamespace(models=models))  # type: ignore[attr-defined]

    assert needed(models) == ("sparse",)
    assert needed({"a": "dense", "b": "dense"}) == ("dense",)
    assert needed({"a": "auto", "b": "sparse"}) == ("dense", "sparse")  # per-frame rule needs both


@pytest.mark.parametrize("max_batch", [1, 4])  # a CPU replica, and a batching ("GPU") one
def test_a_replica_infers_the_cameras_region_as_in_process(tmp_path, frames: list[np.ndarray],
                                                           small_counter: DensityCounter, max_batch: int):
    """On a cluster a camera infers the same region as in-process, and its map equals the local one."""
    from crowdsafe.config.site import load_site
    from crowdsafe.counting.region import RegionCounter
    from crowdsafe.runtime.core import prepare_site
    from crowdsafe.runtime.counters import CameraCounters
    from crowdsafe.runtime.ray.runner import RayCounting
    from tests.support.sites import SQUARE, demo_part

    prepared = prepare_site(load_site(demo_part(tmp_path, [{"id": "square", "polygon": SQUARE}])))
    local = CameraCounters(prepared.plan, EngineSpec("auto", "fp32"), factory=lambda spec: small_counter)
    counting = RayCounting(prepared, EngineSpec(precision="fp32"))  # builds no actor until it opens
    assert counting.regions == local.regions and "view001" in counting.regions
    region = counting.regions["view001"]
    replica = CountReplica(ReplicaSpec(cpu_spec(small_counter.engine.precision, threads=1),
                                       "cuda" if max_batch > 1 else "cpu", max_batch=max_batch))
    counted = replica.count(encode_sample(Sample("view001", 1.0, frames[1]), "raw"), "dense", region)
    expected = RegionCounter(small_counter, *region).count(frames[1]).density
    assert counted.density.shape == (72, 96) and counted.batch == 1
    np.testing.assert_allclose(counted.density, expected, rtol=1e-4, atol=1e-7)
    assert float(counted.density.sum()) > 0 and (counted.density == 0).mean() > 0.5  # only the core
    # the background check's median is counted over the same region as the frames
    median = replica.count_image(frames[1], "dense", region)
    np.testing.assert_allclose(median, expected, rtol=1e-4, atol=1e-7)
