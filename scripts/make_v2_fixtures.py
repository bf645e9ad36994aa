"""Make the Depth Anything V2 parity fixtures by running the UPSTREAM reference code on random weights.

How to regenerate
-----------------
Run from the repository root, in the side environment that holds the upstream packages (never in the
project's own venv; this script does not import ``anydepth``)::

    /work/upvenv/bin/python scripts/make_v2_fixtures.py

That environment is CPU-only Python 3.11 with torch 2.13, numpy < 2, opencv-python-headless 4.11,
``jkp-depth-anything-v2==0.1.1`` (the PyPI mirror of DepthAnything/Depth-Anything-V2, import name
``depth_anything_v2``), ``transformers==5.23.0`` and safetensors. To rebuild one (exact versions are recorded in
each npz's ``meta_json``)::

    python3.11 -m venv /work/upvenv
    /work/upvenv/bin/pip install torch torchvision "numpy<2" opencv-python-headless safetensors transformers==5.23.0
    /work/upvenv/bin/pip install --no-deps jkp-depth-anything-v2==0.1.1  # its other deps serve the gradio demo

Upstream uses only ``torchvision.transforms.Compose``; a stand-in torchvision that lacks the rest also works (see
:func:`import_transformers`).

The run takes one to two minutes and about 6 GB of memory (the ViT-G key list comes from a full-size upstream
model: its constructor cannot run on the meta device), and overwrites, in ``tests/fixtures/``:

- ``v2_parity.npz``: synthetic BGR uint8 images (``image_<i>``), one expected ``infer_image`` output per case
  (``expected_<case>``, float32, HxW of the image) and ``cases_json`` (per case: encoder, features,
  out_channels, max_depth, input_size, seed, image index) plus ``meta_json`` (versions).
- ``v2_keys.json``: ``{"vits"|"vitb"|"vitl"|"vitg": {key: shape}}`` of the upstream state dicts.
- ``v2_hf_parity.npz``: transformers ``DepthAnythingForDepthEstimation`` outputs (``predicted_depth``) on
  given normalised inputs, for the transformers (``-hf``) checkpoint layout; ``cases_json`` describes them.
- ``v2_hf_keys.json``: ``{"small"|"large"|"giant": {key: shape}}`` in the layout of the ``-hf``
  hub files (``model.safetensors``), which is what transformers' ``save_pretrained`` writes.

Weights are not stored: ``tests/helpers/random_weights.py`` fills every key from (key name, shape, seed), so the tests
regenerate the same weights from the stored key names. The output is deterministic; rerunning it on the same
versions reproduces the same arrays.

Metric model: upstream's ``metric_depth/depth_anything_v2/dpt.py`` is not in the PyPI package. It is the same
network with the last ReLU of ``depth_head.scratch.output_conv2`` replaced by a Sigmoid, the head output multiplied
by ``max_depth`` and no final ReLU; :class:`UpstreamMetricDepthAnythingV2` rebuilds exactly that from the packaged
relative model (same state-dict keys).

transformers notes (5.23):

- Its in-memory parameter names differ from the hub files (``attention.q_proj`` vs
  ``attention.attention.query``, SwiGLU ``gate_proj``/``up_proj`` vs ``weights_in``); ``from_pretrained`` renames
  the file names on load. The fixtures use the FILE layout: the random weights are written as a hub-style folder
  (config.json + model.safetensors) and loaded with ``from_pretrained``, as users load the ``-hf`` repos.
- Its DINOv2 resizes position embeddings with ``size=(grid_h, grid_w)``, while upstream DINOv2 (and older
  transformers) uses ``scale_factor=(grid + 0.1) / 37``; the two differ whenever the patch grid is not 37x37.
  Case ``hf_small_518`` runs transformers unchanged at 518x518 (grid 37x37: no resize, so both agree); the
  70x84 cases patch transformers' ``interpolate_pos_encoding`` to upstream's formula so that they test the key
  conversion and the rest of the network on a non-square grid.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
from depth_anything_v2.dpt import DepthAnythingV2  # noqa: E402
from tests.helpers.random_weights import random_state_dict, shapes_of, write_key_lists  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"

# official DPT widths: features, out_channels
HEAD_WIDTHS = {
    "vits": (64, [48, 96, 192, 384]),
    "vitb": (128, [96, 192, 384, 768]),
    "vitl": (256, [256, 512, 1024, 1024]),
    "vitg": (384, [1536, 1536, 1536, 1536]),
}
WEIGHT_SEEDS = {"vits": 4, "vitb": 4}  # seeds whose random weights keep the ReLU output alive

# (H, W) of the synthetic images; odd and portrait sizes on purpose; image 3 is square so that input_size 518
# gives a 518x518 network input (37x37 grid: the position embedding is used without resizing)
IMAGE_SIZES = [(48, 64), (50, 90), (37, 41), (32, 32), (96, 80)]

CASES = [
    # name, encoder, max_depth, input_size, image index
    ("vits_rel_70_img0", "vits", None, 70, 0),
    ("vits_rel_70_img1", "vits", None, 70, 1),
    ("vits_rel_70_img2", "vits", None, 70, 2),
    ("vits_rel_56_img4", "vits", None, 56, 4),  # image larger than the network input: cubic downscale
    ("vits_rel_518_img3", "vits", None, 518, 3),
    ("vitb_rel_98_img1", "vitb", None, 98, 1),
    ("vits_metric20_84_img2", "vits", 20.0, 84, 2),
    ("vits_metric80_84_img0", "vits", 80.0, 84, 0),
]

HF_SEED = 6  # a seed whose random weights keep the ReLU output alive
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class UpstreamMetricDepthAnythingV2(DepthAnythingV2):
    """Upstream ``metric_depth/depth_anything_v2/dpt.py`` rebuilt from the packaged relative model.

    ``output_conv2`` ends in a Sigmoid instead of a ReLU (the trailing Identity has no weights, so the keys are
    unchanged), the head output is multiplied by ``max_depth`` and there is no final ReLU. ``infer_image`` and
    ``image2tensor`` are inherited unchanged, as in upstream.
    """

    def __init__(self, encoder, features, out_channels, max_depth):
        super().__init__(encoder=encoder, features=features, out_channels=out_channels)
        self.max_depth = max_depth
        conv2 = self.depth_head.scratch.output_conv2
        self.depth_head.scratch.output_conv2 = nn.Sequential(conv2[0], conv2[1], conv2[2], nn.Sigmoid())

    def forward(self, x):
        patch_h, patch_w = x.shape[-2] // 14, x.shape[-1] // 14
        features = self.pretrained.get_intermediate_layers(
            x, self.intermediate_layer_idx[self.encoder], return_class_token=True
        )
        depth = self.depth_head(features, patch_h, patch_w) * self.max_depth
        return depth.squeeze(1)


def synth_image(h: int, w: int, seed: int) -> np.ndarray:
    """Deterministic BGR uint8 test image: smooth gradients and waves, a disc, a rectangle, some noise."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3))
    for c in range(3):
        gx, gy = rs.uniform(-1, 1, size=2)
        fx, fy = rs.uniform(0.5, 2.5, size=2)
        phase = rs.uniform(0, 2 * math.pi)
        img[..., c] = (
            128 + 70 * (gx * xx / w + gy * yy / h) + 35 * np.sin(2 * math.pi * (fx * xx / w + fy * yy / h) + phase)
        )
    cy, cx = rs.uniform(0.2, 0.8) * h, rs.uniform(0.2, 0.8) * w
    r = rs.uniform(0.15, 0.3) * min(h, w)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rs.uniform(0, 255, size=3)
    y0, x0 = int(rs.randint(0, h // 2)), int(rs.randint(0, w // 2))
    img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rs.uniform(0, 255, size=3)
    img += rs.normal(0.0, 6.0, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def check_spread(name: str, depth: np.ndarray, max_depth=None) -> None:
    """Refuse degenerate references (all zero, constant, saturated): they could not catch errors."""
    assert depth.dtype == np.float32 and np.isfinite(depth).all(), name
    mean, std = float(np.abs(depth).mean()), float(depth.std())
    zero_frac = float((depth == 0).mean())
    assert mean > 0 and std / mean > 0.02, f"{name}: degenerate output (mean {mean:.3g}, std {std:.3g})"
    assert zero_frac < 0.2, f"{name}: {zero_frac:.0%} of the output is clamped to zero"
    if max_depth is not None:
        saturated = float(((depth < 1e-3 * max_depth) | (depth > (1 - 1e-3) * max_depth)).mean())
        assert saturated < 0.2, f"{name}: {saturated:.0%} of the sigmoid output is saturated"


def build_upstream(encoder: str, max_depth=None) -> nn.Module:
    features, out_channels = HEAD_WIDTHS[encoder]
    if max_depth is None:
        return DepthAnythingV2(encoder=encoder, features=features, out_channels=out_channels)
    return UpstreamMetricDepthAnythingV2(encoder, features, out_channels, max_depth)


def make_v2() -> None:
    images = [synth_image(h, w, seed=100 + i) for i, (h, w) in enumerate(IMAGE_SIZES)]
    arrays = {f"image_{i}": img for i, img in enumerate(images)}
    cases = []
    torch.manual_seed(0)
    for name, encoder, max_depth, input_size, image_index in CASES:
        features, out_channels = HEAD_WIDTHS[encoder]
        seed = WEIGHT_SEEDS[encoder]
        model = build_upstream(encoder, max_depth)
        sd = model.state_dict()
        model.load_state_dict(random_state_dict({k: v.shape for k, v in sd.items()}, seed), strict=True)
        model = model.float().eval()
        image = images[image_index]
        before = image.copy()
        depth = model.infer_image(image, input_size)
        assert np.array_equal(image, before), "upstream modified its input"
        assert depth.shape == image.shape[:2], (name, depth.shape)
        check_spread(name, depth, max_depth)
        arrays[f"expected_{name}"] = depth.astype(np.float32)
        net_h, net_w = model.image2tensor(image, input_size)[0].shape[-2:]
        cases.append(
            {
                "name": name,
                "encoder": encoder,
                "features": features,
                "out_channels": out_channels,
                "max_depth": max_depth,
                "input_size": input_size,
                "seed": seed,
                "image": image_index,
                "network_input_hw": [int(net_h), int(net_w)],
            }
        )
        print(f"{name}: image {image.shape[:2]} -> network {net_h}x{net_w}, depth {depth.min():.4g}..{depth.max():.4g}")
    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["meta_json"] = np.array(json.dumps(versions()))
    np.savez_compressed(FIXTURES / "v2_parity.npz", **arrays)

    keys = {}
    for encoder in ("vits", "vitb", "vitl", "vitg"):
        features, out_channels = HEAD_WIDTHS[encoder]
        # the upstream DINOv2 constructor calls .item(), so it cannot be built on the meta device; ViT-G takes
        # about 5 GB and 45 s here
        model = DepthAnythingV2(encoder=encoder, features=features, out_channels=out_channels)
        keys[encoder] = shapes_of(model.state_dict())
        if encoder in ("vits", "vitb"):
            metric = UpstreamMetricDepthAnythingV2(encoder, features, out_channels, 20.0)
            assert shapes_of(metric.state_dict()) == keys[encoder], "metric keys differ from relative keys"
        del model
        gc.collect()
        print(f"keys {encoder}: {len(keys[encoder])}")
    write_key_lists(FIXTURES / "v2_keys.json", keys)


# ---------------------------------------------------------------------------------------------- transformers


def import_transformers():
    """Import transformers next to the upstream package.

    The side environment may carry a stand-in ``torchvision`` (only ``transforms.Compose``, for upstream); it
    has no ``InterpolationMode``, so transformers would fail to import while believing torchvision is
    installed. Marking it absent in ``sys.modules`` makes ``importlib.util.find_spec`` report None; the upstream
    modules keep the ``Compose`` they already imported.
    """
    tv = sys.modules.get("torchvision.transforms")
    if tv is not None and not hasattr(tv, "InterpolationMode"):
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            sys.modules[name] = None
    import transformers

    return transformers


def hf_config(transformers, size: str, metric_max_depth=None):
    Dinov2Config, DepthAnythingConfig = transformers.Dinov2Config, transformers.DepthAnythingConfig
    # facebook/dinov2-{small,large,giant} configs, as transformers' convert_depth_anything_to_hf.py loads them
    dims = {
        "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, use_swiglu_ffn=False),
        "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, use_swiglu_ffn=False),
        "giant": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True),
    }[size]
    out_indices = {"small": [3, 6, 9, 12], "large": [5, 12, 18, 24], "giant": [10, 20, 30, 40]}[size]
    features, out_channels = HEAD_WIDTHS[{"small": "vits", "large": "vitl", "giant": "vitg"}[size]]
    backbone = Dinov2Config(
        **dims,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        qkv_bias=True,
        hidden_act="gelu",
        out_indices=out_indices,
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    kwargs = {}
    if metric_max_depth is not None:
        kwargs = dict(depth_estimation_type="metric", max_depth=metric_max_depth)
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=dims["hidden_size"],
        patch_size=14,
        neck_hidden_sizes=out_channels,
        fusion_hidden_size=features,
        **kwargs,
    )


def hf_file_layout_shapes(transformers, model) -> dict:
    """Key names and shapes as ``save_pretrained`` writes them (the layout of the ``-hf`` hub files)."""
    from transformers.core_model_loading import revert_weight_conversion

    return shapes_of(revert_weight_conversion(model, dict(model.state_dict())))


def upstream_interpolate_pos_encoding(self, embeddings, height, width):
    """Upstream DINOv2's position-embedding resize (scale_factor with the 0.1 offset), for transformers' Dinov2."""
    pos = self.position_embeddings
    npatch, n = embeddings.shape[1] - 1, pos.shape[1] - 1
    if npatch == n and height == width:
        return pos
    dim = embeddings.shape[-1]
    side = math.sqrt(n)
    grid_h, grid_w = height // 14 + 0.1, width // 14 + 0.1
    patch = F.interpolate(
        pos[:, 1:].float().reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2),
        scale_factor=(grid_h / side, grid_w / side),
        mode="bicubic",
        antialias=False,
    )
    assert patch.shape[-2:] == (int(grid_h), int(grid_w))
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos[:, :1].float(), patch), dim=1).to(pos.dtype)


def normalise(rgb_uint8: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB uint8 -> (1, 3, H, W) float32 ImageNet-normalised, computed in float32."""
    x = (rgb_uint8.astype(np.float32) / np.float32(255.0) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


def load_hf_random(transformers, cfg, seed: int, workdir: Path):
    """Write random weights in the hub-file layout + config.json, and load them with ``from_pretrained``."""
    from safetensors.torch import save_file

    model_cls = transformers.DepthAnythingForDepthEstimation
    shapes = hf_file_layout_shapes(transformers, model_cls(cfg))
    sd = random_state_dict(shapes, seed)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(workdir)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(workdir / "model.safetensors"))
    model, info = model_cls.from_pretrained(workdir, output_loading_info=True, dtype=torch.float32)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"transformers did not load the file layout cleanly: {bad}"
    # the file layout really went through the renaming: compare one packed tensor
    q = model.backbone.encoder.layer[0].attention.q_proj.weight
    assert torch.equal(q, sd["backbone.encoder.layer.0.attention.attention.query.weight"])
    return model.float().eval(), shapes


def make_hf() -> None:
    transformers = import_transformers()
    torch.manual_seed(0)
    keys = {}
    arrays = {}
    cases = []
    with torch.device("meta"):
        for size in ("large", "giant"):
            keys[size] = hf_file_layout_shapes(
                transformers, transformers.DepthAnythingForDepthEstimation(hf_config(transformers, size))
            )

    # 70x84 (grid 5x6) input: stored as float32, as fed to the network
    input_small = normalise(synth_image(70, 84, seed=201)[..., ::-1])
    # 518x518 input: a 74x74 RGB uint8 image repeated 7x7 (exact, no resampling), normalised by normalise()
    image_518 = synth_image(74, 74, seed=202)[..., ::-1].copy()
    input_518 = normalise(np.repeat(np.repeat(image_518, 7, axis=0), 7, axis=1))
    arrays["input_70x84"] = input_small
    arrays["image_518_74x74_rgb"] = image_518

    with tempfile.TemporaryDirectory() as tmp:
        for kind, max_depth in (("small", None), ("small_metric", 20)):
            cfg = hf_config(transformers, "small", max_depth)
            model, shapes = load_hf_random(transformers, cfg, HF_SEED, Path(tmp) / kind)
            # the metric head has the same weights as the relative one: one key list serves both
            assert keys.setdefault("small", shapes) == shapes, "metric -hf keys differ from relative ones"
            runs = []
            if max_depth is None:  # transformers unchanged: 37x37 grid, no position-embedding resize
                runs.append(("hf_small_518", input_518, False))
            runs.append((f"hf_{kind}_70x84", input_small, True))
            for name, pixel_values, patched in runs:
                emb = model.backbone.embeddings
                if patched:
                    emb.interpolate_pos_encoding = types.MethodType(upstream_interpolate_pos_encoding, emb)
                with torch.no_grad():
                    depth = model(pixel_values=torch.from_numpy(pixel_values)).predicted_depth[0].numpy()
                if patched:
                    del emb.interpolate_pos_encoding
                check_spread(name, depth, max_depth)
                stride = 7 if depth.shape[0] > 200 else 1  # keep the 518x518 reference small
                arrays[f"expected_{name}"] = np.ascontiguousarray(depth[3::stride, 3::stride] if stride > 1 else depth)
                cases.append(
                    {
                        "name": name,
                        "hf_keys": "small",
                        "seed": HF_SEED,
                        "depth": 12,
                        "swiglu": False,
                        "max_depth": max_depth,
                        "input": "input_70x84" if pixel_values is input_small else "image_518_74x74_rgb",
                        "input_hw": list(pixel_values.shape[-2:]),
                        "subsample": [3, stride] if stride > 1 else None,
                        "upstream_pos_embed_resize": patched,
                    }
                )
                print(f"{name}: depth {depth.shape} {depth.min():.4g}..{depth.max():.4g}")
    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["meta_json"] = np.array(
        json.dumps(
            {
                **versions(),
                "transformers": transformers.__version__,
                "input_518_rule": "normalise(np.repeat(np.repeat(image_518_74x74_rgb, 7, 0), 7, 1)): "
                "(rgb.astype(float32) / float32(255) - mean) / std in float32, HWC -> 1CHW",
                "subsample_rule": "expected = predicted_depth[0][offset::stride, offset::stride]",
            }
        )
    )
    np.savez_compressed(FIXTURES / "v2_hf_parity.npz", **arrays)
    write_key_lists(FIXTURES / "v2_hf_keys.json", {k: keys[k] for k in ("small", "large", "giant")})


def versions() -> dict:
    from importlib.metadata import version

    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cv2": cv2.__version__,
        "jkp-depth-anything-v2": version("jkp-depth-anything-v2"),
        "python": sys.version.split()[0],
    }


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    make_v2()
    make_hf()
    for f in ("v2_parity.npz", "v2_keys.json", "v2_hf_parity.npz", "v2_hf_keys.json"):
        print(f"{f}: {(FIXTURES / f).stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
