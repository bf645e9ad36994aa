"""What to write instead of the options of upstream's scripts: hints added to the command line's "No such option"."""

from __future__ import annotations

from typing import Dict, Optional

_NONE = "anydepth has no equivalent"

# Options of Depth Anything V2's run.py, run_video.py and metric_depth/run.py, Video Depth Anything's run.py and
# run_streaming.py, DepthCrafter's run.py and DA3's `da3` that anydepth spells otherwise or has not, in their
# dashed spelling (`--input_size` and python-fire's `--save_folder` are looked up as `--input-size`, `--save-folder`).
# docs/compat.md has the whole table; tests/compat/test_surface.py holds every upstream option to it.
UPSTREAM_OPTIONS: Dict[str, str] = {
    "--img-path": "give the image, folder, glob or .txt list as the argument: `anydepth image PATH`, "
    "`anydepth images DIR`",
    "--video-path": "give the video as the argument: `anydepth video PATH` (DepthCrafter: --model depthcrafter)",
    "--input-video": "give the video as the argument: `anydepth video PATH --model vda-small` (or vda-base, vda-large)",
    "--encoder": "use --model dav2-small / dav2-base / dav2-large / dav2-giant for vits / vitb / vitl / vitg "
    "(Video Depth Anything: vda-small / vda-base / vda-large)",
    "--load-from": "use --weights PATH",
    "--max-depth": "use --model dav2-metric-indoor-* (20 m) or dav2-metric-outdoor-* (80 m); the range is the model's",
    "--save-numpy": "use --raw npy (NAME_depth.npy, metres for metric models)",
    "--output-dir": "use --outdir DIR",
    "--save-folder": "use --outdir DIR",
    "--input-size": "use --input-size N",
    "--max-res": "use --dc-max-res N for DepthCrafter; Video Depth Anything's has no equivalent: frames go in at "
    "--input-size, resize the video to cap the output size",
    "--max-len": "use --max-frames N",
    "--process-length": "use --max-frames N",
    "--target-fps": "use --fps F",
    "--metric": "use --model vda-metric-small (or vda-metric-base, vda-metric-large)",
    "--fp32": "use --precision fp32",
    "--save-npz": "use --raw npz (vda-*: NAME_depths.npz, key depths; depthcrafter: NAME.npz, key depth)",
    "--save-exr": "use --raw exr (vda-*: NAME_depths_exr/frame_00000.exr; depthcrafter: NAME/frame_0000.exr)",
    "--focal-length-x": f"{_NONE}: per-frame point clouds are not written; `anydepth auto` exports point clouds",
    "--focal-length-y": f"{_NONE}: per-frame point clouds are not written; `anydepth auto` exports point clouds",
    "--unet-path": "use --weights PATH_OR_REPO (the folder or repo holding unet/)",
    "--pre-train-path": "use --svd-weights PATH_OR_REPO",
    "--cpu-offload": "use --cpu-offload model (or sequential, none)",
    "--num-inference-steps": "use --dc-steps N",
    "--guidance-scale": "use --dc-guidance G",
    "--window-size": "use --dc-window N",
    "--overlap": "use --dc-overlap N",
    "--dataset": f"{_NONE}: the presets of the paper's evaluation; pass --dc-max-res and --fps",
    "--track-time": f"{_NONE}; the progress bar shows the time per frame (drop --quiet)",
    "--gallery-dir": "serve the gallery with `anydepth gallery --gallery-dir DIR` (this command does not serve it)",
    "--share": f"{_NONE}: the app serves on --host (loopback by default), never through a public share link",
    "--debug": "use the global option: `anydepth --debug COMMAND ...`",
    "--cache-examples": f"{_NONE}: the app ships no example scenes",
    "--cache-gs-tag": f"{_NONE}: the app ships no example scenes",
}


def upstream_option_hint(option: Optional[str]) -> Optional[str]:
    """What to write instead of upstream's ``option`` (any of its spellings, with or without ``=value``), or None:
    "use --outdir DIR", "give the video as the argument: ...", "anydepth has no equivalent: ..."."""
    if not option or not option.startswith("--"):
        return None
    name = "--" + option[2:].split("=", 1)[0].replace("_", "-")
    if name.startswith("--no-") and name not in UPSTREAM_OPTIONS:
        name = "--" + name[5:]  # a flag's off form: --no-share
    return UPSTREAM_OPTIONS.get(name)
