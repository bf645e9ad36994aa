"""The presets table: model name -> architecture, weights on the hub (repo, file, revision, license), preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from anydepth.errors import UnknownModelError

if TYPE_CHECKING:  # the table itself stays free of torch: `anydepth models` lists it without importing torch
    from anydepth.models.depth_anything_v2 import DepthAnythingV2Config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsSpec:
    """Where a preset's weights live.

    Attributes:
        repo_id: Hugging Face hub repository.
        filename: file inside the repository.
        revision: branch, tag or commit to download (pin a commit for reproducible deployments).
        layout: key layout of the file: "v2" (official ``pretrained.*`` / ``depth_head.*``), "hf"
            (transformers ``backbone.*`` / ``neck.*`` / ``head.*``), "da3", "vda" (Video Depth Anything
            ``pretrained.*`` / ``head.*``) or "diffusers" (a diffusers repo of component folders; ``filename``
            names its main file).
        license: licence of the weights, shown when they are first used.
        bundled: the file ships inside the package (``anydepth/builtin/<filename>``): it is read from there and
            nothing is downloaded; ``repo_id`` is then empty. The built-in model, so that the package runs on a
            machine that cannot reach the hub.
    """

    repo_id: str
    filename: str
    license: str
    revision: str = "main"
    layout: str = "v2"
    bundled: bool = False


@dataclass(frozen=True)
class Preset:
    """One named model.

    Attributes:
        name: preset name used by ``load_model`` and ``--model``.
        family: model family ("dav2", "da3", "vda", "depthcrafter").
        encoder: DINOv2 size ("vits", "vitb", "vitl", "vitg").
        depth_kind: "disparity" (affine-invariant relative output) or "metric" (metres).
        params: parameter count in millions.
        weights: hub location, or None where no checkpoint is published (local weights only).
        max_depth: metric range of the sigmoid head in metres; None for relative models.
        input_size: default processing resolution (V2: shorter side; DA3: ``process_res``).
        description: one line for listings.
        arch: upstream configuration name of DA3 models ("da3-small", ..., "da3nested-giant-large").
        base_weights: a second repo the model needs (DepthCrafter: Stable Video Diffusion's VAE, image encoder,
            scheduler and feature extractor folders).
        network: the V2 architecture where it is none of the official encoder sizes (the built-in model): the
            name of a ``DepthAnythingV2Config`` in :mod:`anydepth.models.depth_anything_v2`, read by
            :meth:`config` (a name, so that the table imports no torch); None: the official configuration of
            ``encoder``.
        card: the model card shipped in the package, a path relative to ``anydepth/`` (the built-in model's:
            data, training command, figures, caveats); None where the hub repo has the card.
    """

    name: str
    family: str
    encoder: str
    depth_kind: str
    params: float
    weights: Optional[WeightsSpec]
    max_depth: Optional[float] = None
    input_size: int = 518
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    description: str = ""
    arch: Optional[str] = None
    base_weights: Optional[WeightsSpec] = None
    network: Optional[str] = None
    card: Optional[str] = None

    def config(self) -> DepthAnythingV2Config:
        """Network configuration of a Depth Anything V2 preset."""
        from anydepth.models import depth_anything_v2

        if self.family != "dav2":
            raise ValueError(f"{self.name} is a {self.family} model; build it with anydepth.build_network")
        if self.network is not None:
            return getattr(depth_anything_v2, self.network)
        return depth_anything_v2.DepthAnythingV2Config.from_encoder(self.encoder, max_depth=self.max_depth)

    @property
    def license(self) -> str:
        return self.weights.license if self.weights else "n/a"


_SIZES = {"small": ("vits", "Small", 24.8), "base": ("vitb", "Base", 97.5), "large": ("vitl", "Large", 335.3)}
# the Small checkpoints are Apache-2.0; Base and Large are CC-BY-NC-4.0 (non-commercial)
_LICENSES = {"small": "Apache-2.0", "base": "CC-BY-NC-4.0", "large": "CC-BY-NC-4.0"}
_METRIC = {"indoor": ("Hypersim", "hypersim", "Indoor", 20.0), "outdoor": ("VKITTI", "vkitti", "Outdoor", 80.0)}


def _v2_pair(name: str, encoder: str, params: float, license: str, repo: str, hf_repo: str, filename: str,
             description: str, max_depth: Optional[float] = None) -> List[Preset]:  # fmt: skip
    """A V2 preset with its official ``.pth`` and its ``-hf`` twin with the transformers ``model.safetensors``."""
    kind = "disparity" if max_depth is None else "metric"
    common = dict(family="dav2", encoder=encoder, depth_kind=kind, params=params, max_depth=max_depth)
    return [
        Preset(name=name, weights=WeightsSpec(repo, filename, license), description=description, **common),
        Preset(
            name=f"{name}-hf",
            weights=WeightsSpec(hf_repo, "model.safetensors", license, layout="hf"),
            description=f"{description}, transformers checkpoint",
            **common,
        ),
    ]


def _build_table() -> Dict[str, Preset]:
    table: List[Preset] = []
    for size, (enc, title, params) in _SIZES.items():
        lic = _LICENSES[size]
        table += _v2_pair(
            f"dav2-{size}", enc, params, lic,
            repo=f"depth-anything/Depth-Anything-V2-{title}",
            hf_repo=f"depth-anything/Depth-Anything-V2-{title}-hf",
            filename=f"depth_anything_v2_{enc}.pth",
            description=f"Depth Anything V2 {title}, relative disparity",
        )  # fmt: skip
        for scene, (dataset, file_tag, hf_tag, max_depth) in _METRIC.items():
            table += _v2_pair(
                f"dav2-metric-{scene}-{size}", enc, params, lic,
                repo=f"depth-anything/Depth-Anything-V2-Metric-{dataset}-{title}",
                hf_repo=f"depth-anything/Depth-Anything-V2-Metric-{hf_tag}-{title}-hf",
                filename=f"depth_anything_v2_metric_{file_tag}_{enc}.pth",
                description=f"Depth Anything V2 {title} metric {scene} ({dataset}), metres up to {max_depth:g}",
                max_depth=max_depth,
            )  # fmt: skip
    table.append(
        Preset(
            name="dav2-giant",
            family="dav2",
            encoder="vitg",
            depth_kind="disparity",
            params=1258.1,
            weights=None,
            description="Depth Anything V2 Giant architecture (no public checkpoint: pass --weights)",
        )
    )
    table += _da3_presets()
    table += _vda_presets()
    table.append(_depthcrafter_preset())
    table.append(_builtin_preset())
    return {p.name: p for p in table}


# (preset, upstream config, encoder, hub repo, licence, depth kind, parameters in millions)
_DA3 = [
    ("da3-small", "da3-small", "vits", "DA3-SMALL", "Apache-2.0", "depth", 34.3),
    ("da3-base", "da3-base", "vitb", "DA3-BASE", "Apache-2.0", "depth", 135.4),
    ("da3-large", "da3-large", "vitl", "DA3-LARGE-1.1", "CC-BY-NC-4.0", "depth", 410.9),
    ("da3-large-1.1", "da3-large", "vitl", "DA3-LARGE-1.1", "CC-BY-NC-4.0", "depth", 410.9),
    ("da3-large-1.0", "da3-large", "vitl", "DA3-LARGE", "CC-BY-NC-4.0", "depth", 410.9),
    ("da3-giant", "da3-giant", "vitg", "DA3-GIANT-1.1", "CC-BY-NC-4.0", "depth", 1355.7),
    ("da3-giant-1.1", "da3-giant", "vitg", "DA3-GIANT-1.1", "CC-BY-NC-4.0", "depth", 1355.7),
    ("da3-giant-1.0", "da3-giant", "vitg", "DA3-GIANT", "CC-BY-NC-4.0", "depth", 1355.7),
    ("da3mono-large", "da3mono-large", "vitl", "DA3MONO-LARGE", "Apache-2.0", "depth", 334.2),
    ("da3metric-large", "da3metric-large", "vitl", "DA3METRIC-LARGE", "Apache-2.0", "metric", 334.2),
    ("da3nested-giant-large", "da3nested-giant-large", "vitg", "DA3NESTED-GIANT-LARGE-1.1", "CC-BY-NC-4.0", "metric",
     1689.8),
    ("da3nested-giant-large-1.1", "da3nested-giant-large", "vitg", "DA3NESTED-GIANT-LARGE-1.1", "CC-BY-NC-4.0",
     "metric", 1689.8),
    ("da3nested-giant-large-1.0", "da3nested-giant-large", "vitg", "DA3NESTED-GIANT-LARGE", "CC-BY-NC-4.0", "metric",
     1689.8),
]  # fmt: skip


def _da3_presets() -> List[Preset]:
    presets = []
    for name, arch, encoder, repo, lic, kind, params in _DA3:
        note = " (original release, superseded by 1.1)" if name.endswith("-1.0") else ""
        presets.append(
            Preset(
                name=name,
                family="da3",
                encoder=encoder,
                depth_kind=kind,
                params=params,
                weights=WeightsSpec(f"depth-anything/{repo}", "model.safetensors", lic, layout="da3"),
                input_size=504,
                description=f"Depth Anything 3 {repo}{note}",
                arch=arch,
            )
        )
    return presets


# Video Depth Anything: size -> (encoder, hub title, parameters in millions). Counted from the networks that load
# the official files strictly; upstream's README gives 28.4M / 113.1M / 381.8M.
_VDA = {"small": ("vits", "Small", 29.0), "base": ("vitb", "Base", 114.4), "large": ("vitl", "Large", 384.4)}


def _vda_presets() -> List[Preset]:
    presets = []
    for size, (encoder, title, params) in _VDA.items():
        # licences as upstream's README states them for the relative models (Small Apache-2.0, Base/Large
        # CC-BY-NC-4.0); the metric model cards are taken to follow the same split
        lic = _LICENSES[size]
        for metric in (False, True):
            repo = f"depth-anything/{'Metric-' if metric else ''}Video-Depth-Anything-{title}"
            filename = f"{'metric_' if metric else ''}video_depth_anything_{encoder}.pth"
            kind = "metric" if metric else "disparity"
            presets.append(
                Preset(
                    name=f"vda-{'metric-' if metric else ''}{size}",
                    family="vda",
                    encoder=encoder,
                    depth_kind=kind,
                    params=params,
                    weights=WeightsSpec(repo, filename, lic, layout="vda"),
                    description=f"Video Depth Anything {title}, {'metres' if metric else 'relative disparity'}",
                )
            )
    return presets


def _depthcrafter_preset() -> Preset:
    # parameters counted on the networks built from the official configs: UNet 1524.6M, VAE 97.7M, CLIP
    # ViT-H/14 image encoder 632.1M
    return Preset(
        name="depthcrafter",
        family="depthcrafter",
        encoder="svd-unet",
        depth_kind="disparity",
        params=2254.4,
        weights=WeightsSpec(
            "tencent/DepthCrafter",
            "unet/diffusion_pytorch_model.safetensors",
            "DepthCrafter licence (academic, research and education use only)",
            layout="diffusers",
        ),
        base_weights=WeightsSpec(
            "stabilityai/stable-video-diffusion-img2vid-xt",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "Stability AI Community License",
            layout="diffusers",
        ),
        input_size=1024,
        description="DepthCrafter video diffusion (SVD UNet), relative disparity; needs anydepth[depthcrafter]",
    )


def _builtin_preset() -> Preset:
    # trained here from no external weights (its card says how); shipped in the package, never downloaded
    return Preset(
        name="anydepth-nano",
        family="dav2",
        encoder="nano",
        depth_kind="disparity",
        params=3.5,
        weights=WeightsSpec("", "anydepth-nano.safetensors", "Apache-2.0", bundled=True),
        input_size=98,  # chosen on validation scenes (card): the shorter side of its training crops
        description="built-in 3.5M V2 network trained on synthetic scenes only: offline use and tests",
        network="NANO",  # anydepth.models.depth_anything_v2.NANO
        card="builtin/anydepth-nano.md",
    )


PRESETS: Dict[str, Preset] = _build_table()


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an UnknownModelError lists the close names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Run `anydepth models` to list the {len(PRESETS)} presets."
        ) from None


def guess_preset(weights: str) -> Optional[str]:
    """The preset that ``weights`` belongs to, when it says so itself; None when it does not.

    Recognises a hub repo id of a preset ("depth-anything/DA3-SMALL"), an official checkpoint file name
    ("depth_anything_v2_vitl.pth"), a DA3 folder whose ``config.json`` names its ``model_name``, and an
    exported artefact whose manifest (``<artefact>.json``) names its model. Lets
    ``--weights`` / ``--model-dir`` stand alone, as upstream's ``--model-dir`` and ``--encoder`` do.
    """
    import json
    from pathlib import Path

    text = str(weights)
    for preset in PRESETS.values():
        spec = preset.weights
        if spec is not None and spec.repo_id and spec.repo_id.lower() == text.lower():
            return preset.name
    path = Path(text).expanduser()
    if path.is_file():
        manifest = path if path.name.endswith(".json") else path.with_name(path.name + ".json")
        if manifest.is_file():  # an artefact of `anydepth export` names its model in its manifest
            try:
                model = json.loads(manifest.read_text()).get("model")
            except (OSError, ValueError, AttributeError):
                model = None
            if isinstance(model, str) and model in PRESETS:
                return model
        for preset in PRESETS.values():
            spec = preset.weights
            if spec is not None and spec.layout in ("v2", "vda") and spec.filename == path.name:
                return preset.name
        return None
    if path.is_dir() and (path / "unet" / "config.json").is_file():  # a diffusers repo folder: DepthCrafter's
        return "depthcrafter"
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        try:
            arch = json.loads(config.read_text()).get("model_name")
        except (OSError, ValueError, AttributeError):
            return None
        preset = preset_for_arch(arch) if isinstance(arch, str) else None
        return preset.name if preset else None
    return None


def preset_for_arch(arch: str) -> Optional[Preset]:
    """The first preset built from upstream DA3's configuration ``arch`` ("da3-large"); None when none is."""
    return next((p for p in PRESETS.values() if p.arch is not None and p.arch == arch), None)


@dataclass(frozen=True)
class ModelInfo:
    """One row of :func:`list_models`."""

    name: str
    family: str
    depth_kind: str
    params_m: float
    license: str
    repo_id: Optional[str]
    description: str
    bundled: bool = False
    card: Optional[Path] = None
    """The model card shipped in the package (the built-in model's); None: the hub repo's page has it."""


def list_models(family: Optional[str] = None) -> List[ModelInfo]:
    """The presets, optionally of one family ("dav2"), in table order."""
    return [
        ModelInfo(
            name=p.name,
            family=p.family,
            depth_kind=p.depth_kind,
            params_m=p.params,
            license=p.license,
            repo_id=p.weights.repo_id if p.weights and not p.weights.bundled else None,
            description=p.description,
            bundled=bool(p.weights and p.weights.bundled),
            card=None if p.card is None else Path(__file__).resolve().parent / p.card,
        )
        for p in PRESETS.values()
        if family is None or p.family == family
    ]
