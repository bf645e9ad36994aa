"""DepthCrafter end to end on tiny random networks: upstream parity, lazy frames, loading layouts, option checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import anydepth
from anydepth.errors import InputError, MissingDependencyError, ShapeError, WeightsError
from anydepth.pipelines.depthcrafter.pipeline import normalize_video_depth
from anydepth.presets import guess_preset
from tests.helpers.depthcrafter_tiny import build_networks, synthetic_frames
from tests.helpers.paths import FIXTURES

FIXTURE = FIXTURES / "depthcrafter_parity.npz"
SMALL = dict(window=4, overlap=1, steps=1, decode_chunk_size=2)  # fast settings for the non-parity tests


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(depthcrafter_folders):
    return depthcrafter_folders


@pytest.fixture(scope="module")
def model(folders):
    depthcrafter, svd = folders
    return anydepth.load_model("depthcrafter", weights=depthcrafter, svd_weights=svd, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def _case(reference, name):
    cases = json.loads(str(reference["cases_json"]))
    return cases[name]


@pytest.mark.parametrize("name", ["windows", "single", "guided"])
def test_matches_upstream_pipeline(model, reference, name):
    """The upstream pipeline's output on the same networks, frames and noise (scripts/make_depthcrafter_fixtures.py):
    three windows with two blended overlaps, a single short window, and guidance 2 (unconditional branch)."""
    case = _case(reference, name)
    meta = json.loads(str(reference["meta_json"]))
    frames = synthetic_frames(case["frames"])
    assert int(frames.sum()) == meta["frames_sum"][name]  # the same frames as the fixture's
    options = dict(steps=case["steps"], guidance=case["guidance"], window=case["window"], overlap=case["overlap"])
    depth = np.stack(
        list(
            model.infer_frames(
                frames.numpy(), seed=case["seed"], align=False, decode_chunk_size=case["decode_chunk"], **options
            )
        )
    )
    assert depth.shape == (case["frames"], 64, 64) and depth.dtype == np.float32
    expected = reference[f"{name}_raw"]
    relative = np.abs(depth[:, ::2, ::2] - expected) / np.abs(expected)
    assert np.percentile(relative, 99) <= 1e-3, np.percentile(relative, 99)  # measured: about 2e-6
    assert depth.min() == pytest.approx(float(reference[f"{name}_min"]), abs=1e-4)
    assert depth.max() == pytest.approx(float(reference[f"{name}_max"]), abs=1e-4)
    # upstream's final output: min-max over the whole video
    low, high = reference[f"{name}_min"], reference[f"{name}_max"]
    normalized = normalize_video_depth(depth)
    np.testing.assert_allclose(normalized[:, ::2, ::2], (expected - low) / (high - low), atol=1e-4)


def test_unet_with_one_embedding_per_video_equals_svd_unet(folders):
    """Our forward with the same embedding on every frame is diffusers' SVD forward (one embedding per clip)."""
    from diffusers import UNetSpatioTemporalConditionModel

    from anydepth.models.depthcrafter.unet import DepthCrafterUNet

    ours = DepthCrafterUNet.from_pretrained(folders[0] / "unet").eval()
    svd = UNetSpatioTemporalConditionModel.from_pretrained(folders[0] / "unet").eval()
    g = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 3, 8, 8, 8), generator=g)
    embedding = torch.randn((1, 1, 16), generator=g)
    time_ids = torch.tensor([[7.0, 127.0, 0.02]])
    with torch.no_grad():
        a = ours(sample, 10.0, embedding.expand(1, 3, 16), time_ids).sample
        b = svd(sample, 10.0, embedding, time_ids).sample
        c = ours(sample, 10.0, torch.randn((1, 3, 16), generator=g), time_ids).sample
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (a - c).abs().max() > 1e-3  # and the per-frame embeddings do reach the frames


class CountingFrames:
    """A generator of frames that records how many it has handed out."""

    def __init__(self, num_frames):
        self.num_frames = num_frames
        self.read = 0

    def __iter__(self):
        base = synthetic_frames(12).numpy()
        for t in range(self.num_frames):
            self.read += 1
            yield base[t % 12]


@pytest.mark.parametrize("align", [False, True])
def test_frames_are_read_lazily_and_depth_leaves_early(model, align):
    """Memory flat in the video's length: when each depth frame comes out, at most about one window of frames
    has been read ahead of it, for a short and a four times longer video."""
    leads = []
    for num_frames in (5, 20):
        frames = CountingFrames(num_frames)
        lead = 0
        for index, _depth in enumerate(model.infer_frames(iter(frames), align=align, **SMALL)):
            lead = max(lead, frames.read - index)
        assert frames.read == num_frames and index == num_frames - 1
        leads.append(lead)
    window, chunk = SMALL["window"], SMALL["decode_chunk_size"]
    assert max(leads) <= window + chunk, leads  # the same bound for 4x the frames: no growth with the length


def test_alignment_changes_only_the_join(model):
    frames = synthetic_frames(6).numpy()
    upstream = np.stack(list(model.infer_frames(frames, align=False, **SMALL)))
    aligned = np.stack(list(model.infer_frames(frames, align=True, **SMALL)))
    # the first decode chunk lies before any overlap: same networks, same noise, same numbers
    np.testing.assert_allclose(aligned[:2], upstream[:2], atol=1e-5)
    assert np.abs(aligned - upstream).max() > 1e-3
    # infer: the same maps, min-max normalised over the video as upstream's output
    prediction = model.infer(frames, align=True, **SMALL)
    assert prediction.depth_kind == "disparity" and prediction.depth.shape == (6, 64, 64)
    assert prediction.depth.min() == 0.0 and prediction.depth.max() == pytest.approx(1.0)
    np.testing.assert_allclose(prediction.depth, normalize_video_depth(aligned), atol=1e-6)


def test_seed_and_inputs(model):
    frames = synthetic_frames(4)
    a = np.stack(list(model.infer_frames(frames.numpy(), seed=1, **SMALL)))
    b = np.stack(list(model.infer_frames(frames.numpy(), seed=1, **SMALL)))
    c = np.stack(list(model.infer_frames(frames.numpy(), seed=2, **SMALL)))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4
    floats = np.stack(list(model.infer_frames(frames.numpy().astype(np.float32) / 255.0, seed=1, **SMALL)))
    np.testing.assert_allclose(floats, a, atol=1e-5)
    # frames not a multiple of 64 are resized for the network and the depth back to them
    odd = np.stack(list(model.infer_frames(frames.numpy()[:, :50, :60], **SMALL)))
    assert odd.shape == (4, 50, 60)
    processing = next(model.infer_frames(frames.numpy()[:, :50, :60], output_resolution="processing", **SMALL))
    assert processing.shape == (64, 64)


def test_bad_inputs(model):
    frames = synthetic_frames(3).numpy()
    with pytest.raises(ShapeError, match="all frames"):
        list(model.infer_frames([frames[0], frames[1][:32]], **SMALL))
    with pytest.raises(ShapeError, match="RGB"):
        list(model.infer_frames([frames[0, ..., 0]], **SMALL))
    with pytest.raises(InputError, match="no frames"):
        model.infer(np.zeros((0, 64, 64, 3), np.uint8), **SMALL)
    for bad in (dict(overlap=5), dict(steps=0), dict(guidance=0.5), dict(max_res=32), dict(decode_chunk_size=0)):
        with pytest.raises(InputError):
            next(model.infer_frames(frames, **{**SMALL, **bad}))
    with pytest.raises(InputError, match="output_resolution"):
        next(model.infer_frames(frames, output_resolution="full", **SMALL))


def _hub_cache(cache: Path, repo_id: str, source: Path, commit: str) -> None:
    """Copy a repo folder into huggingface_hub's cache layout: refs/main -> snapshots/<commit>/..."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(source, repo / "snapshots" / commit)


def test_loads_from_the_hub_cache_offline(folders, tmp_path, reference):
    depthcrafter, svd = folders
    cache = tmp_path / "hub"
    _hub_cache(cache, "tencent/DepthCrafter", depthcrafter, "a" * 40)
    _hub_cache(cache, "stabilityai/stable-video-diffusion-img2vid-xt", svd, "b" * 40)
    model = anydepth.load_model("depthcrafter", device="cpu", cache_dir=cache, local_files_only=True, precision="fp32")
    case = _case(reference, "single")
    depth = np.stack(list(model.infer_frames(synthetic_frames(case["frames"]).numpy(), seed=case["seed"],
                                             steps=case["steps"], window=case["window"], overlap=case["overlap"],
                                             align=False, decode_chunk_size=case["decode_chunk"])))  # fmt: skip
    np.testing.assert_allclose(depth[:, ::2, ::2], reference["single_raw"], rtol=1e-3, atol=1e-5)
    # an SVD repo missing from the cache: one message naming the repo and the option
    shutil.rmtree(cache / "models--stabilityai--stable-video-diffusion-img2vid-xt")
    with pytest.raises(WeightsError, match=r"stable-video-diffusion-img2vid-xt.*--svd-weights"):
        anydepth.load_model("depthcrafter", device="cpu", cache_dir=cache, local_files_only=True)


def test_local_folder_layouts(folders, tmp_path):
    depthcrafter, svd = folders
    # one folder with all five sub-folders serves as both
    both = tmp_path / "both"
    shutil.copytree(svd, both)
    shutil.copytree(depthcrafter / "unet", both / "unet")
    model = anydepth.load_model("depthcrafter", weights=both, device="cpu")
    assert model.depth_kind == "disparity" and "depthcrafter" in repr(model)
    # the unet folder itself
    anydepth.load_model("depthcrafter", weights=depthcrafter / "unet", svd_weights=svd, device="cpu")
    # --weights alone names the model, as for the other families
    assert guess_preset(str(depthcrafter)) == guess_preset("tencent/DepthCrafter") == "depthcrafter"
    assert guess_preset(str(svd)) is None
    with pytest.raises(WeightsError, match=r"no unet/config\.json"):
        anydepth.load_model("depthcrafter", weights=tmp_path, svd_weights=svd, device="cpu")
    with pytest.raises(WeightsError, match="missing image_encoder"):
        broken = tmp_path / "broken"
        shutil.copytree(svd, broken)
        shutil.rmtree(broken / "image_encoder")
        anydepth.load_model("depthcrafter", weights=depthcrafter, svd_weights=broken, device="cpu")


def test_cpu_offload_checks(folders, monkeypatch):
    import importlib.util

    depthcrafter, svd = folders
    load = lambda **kw: anydepth.load_model("depthcrafter", weights=depthcrafter, svd_weights=svd, **kw)  # noqa: E731
    with pytest.raises(InputError, match="choose model, sequential"):
        load(device="cpu", cpu_offload="everything")
    with pytest.raises(InputError, match="needs a CUDA device"):
        load(device="cpu", cpu_offload="model")
    with pytest.raises(InputError, match="fp16 on the CPU"):
        load(device="cpu", precision="fp16")
    with pytest.raises(InputError, match="DepthCrafter options"):
        anydepth.load_model("dav2-small", weights="x.pth", cpu_offload="model")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"anydepth\[depthcrafter\]"):
        load(device="cpu", cpu_offload="sequential")


@pytest.mark.precision
def test_float_networks_load_in_the_asked_precision(folders):
    depthcrafter, svd = folders
    model = anydepth.load_model("depthcrafter", weights=depthcrafter, svd_weights=svd, device="cpu", precision="bf16")
    assert model.components.unet.dtype == torch.bfloat16 and model.precision == "bf16"
    depth = next(model.infer_frames(synthetic_frames(2).numpy(), **SMALL))
    assert depth.dtype == np.float32 and np.isfinite(depth).all()


def test_tiny_networks_are_the_fixtures_networks():
    """build_networks is deterministic: the same weights the fixture script gave upstream."""
    a = build_networks(0)[0].state_dict()
    b = build_networks(0)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_auto_runs_bf16_on_cpus_with_native_bf16(folders, monkeypatch):
    depthcrafter, svd = folders
    load = lambda: anydepth.load_model("depthcrafter", weights=depthcrafter, svd_weights=svd, device="cpu")  # noqa: E731
    monkeypatch.setattr("anydepth.pipelines.runtime.auto_picks_cpu_bf16", lambda: True)
    fast = load()
    assert fast.components.unet.dtype == torch.bfloat16 and fast.components.vae.dtype == torch.bfloat16
    monkeypatch.setattr("anydepth.pipelines.runtime.auto_picks_cpu_bf16", lambda: False)  # AVX2 only, or switched off
    assert load().components.unet.dtype == torch.float32
