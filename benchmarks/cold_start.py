"""Cold start: seconds from the command to the first depth picture written, import and model load included,
`anydepth image` against upstream Depth Anything V2's `run.py`, side by side in one run, alternating.

Both read the same random dav2-small checkpoint in the official layout and the same 640x480 photo, on the CPU,
in fresh processes. Upstream's script comes from its repository (a clone or a `git show HEAD:run.py`) and runs in
the side virtualenv of `../shared/upstream/make-upstream-env.sh`, from a folder holding `checkpoints/`.

With ``--warm``, also the time each backend service spends warming a DA3 model, in fresh processes: upstream's
``da3 backend`` warms with ``DepthAnything3.from_pretrained(model_dir).to(device)`` on its first job, ours with
``anydepth.load_model`` (what ``anydepth backend`` runs at start, or on a model's first job); both on the same
random da3-small hub folder (``config.json`` + ``model.safetensors``), imports included, then the first inference
of 4 views at 504 (the first job's compute).

Usage: PYTHONPATH=src python benchmarks/cold_start.py --upstream-python .upstream-venv/bin/python \\
    --upstream-script /tmp/v2_run.py [--rounds 3] [--warm]
Prints one JSON line per round and a summary with the ratio's range, and the CPU's model name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import cpu_model


def make_inputs(work: Path) -> Path:
    """The photo and ``checkpoints/depth_anything_v2_vits.pth`` (random, official layout) under ``work``."""
    import torch
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.helpers.random_weights import random_state_dict

    from anydepth.api import build_network

    net = build_network("dav2-small")
    (work / "checkpoints").mkdir(parents=True)
    torch.save(random_state_dict({k: v.shape for k, v in net.state_dict().items()}, seed=0),
               work / "checkpoints" / "depth_anything_v2_vits.pth")  # fmt: skip
    photo = work / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(photo)
    return photo


def timed(command: list, cwd: Path, picture: Path) -> float:
    """Wall seconds of ``command`` until it exits, checked to have written ``picture``."""
    if picture.exists():
        picture.unlink()
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    if not picture.is_file():
        raise RuntimeError(f"{command[0]} wrote no {picture}")
    return seconds


_WARM = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
import torch
imported = time.perf_counter()
rng = np.random.default_rng(0)
views = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
if {who!r} == "upstream":
    from depth_anything_3.api import DepthAnything3
    imported = time.perf_counter()
    model = DepthAnything3.from_pretrained({folder!r}).to("cpu").eval()
    loaded = time.perf_counter()
    model.inference(views, process_res=504)
else:
    import anydepth
    model = anydepth.load_model("da3-small", weights={folder!r}, device="cpu")
    loaded = time.perf_counter()
    model.infer(views, process_res=504)
done = time.perf_counter()
print(json.dumps({{"import_s": imported - start, "load_s": loaded - imported, "warm_s": loaded - start,
                  "first_job_s": done - loaded}}))
"""


def warm_round(python: str, who: str, folder: Path) -> dict:
    done = subprocess.run([python, "-c", _WARM.format(who=who, folder=str(folder))], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{who} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream-python", required=True, help="python of the side virtualenv")
    parser.add_argument("--upstream-script", required=True, help="upstream Depth Anything V2's run.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", action="store_true", help="also the backends' time to warm a DA3 model")
    args = parser.parse_args()
    anydepth = str(Path(sys.executable).parent / "anydepth")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photo = make_inputs(work)
        shutil.copy(args.upstream_script, work / "run.py")
        weights = str(work / "checkpoints" / "depth_anything_v2_vits.pth")
        ours_cmd = [anydepth, "image", str(photo), "--model", "dav2-small", "--weights", weights, "--device", "cpu",
                    "--outdir", str(work / "ours")]  # fmt: skip
        # the side virtualenv's python as given (resolving its symlink would leave the virtualenv)
        theirs_cmd = [str(Path(args.upstream_python).absolute()), "run.py", "--encoder", "vits", "--img-path",
                      str(photo), "--outdir", str(work / "theirs")]  # fmt: skip
        ratios = []
        for round_ in range(args.rounds):
            theirs = timed(theirs_cmd, work, work / "theirs" / "photo.png")
            ours = timed(ours_cmd, work, work / "ours" / "photo.png")
            ratios.append(theirs / ours)
            print(json.dumps({"round": round_, "upstream_s": round(theirs, 2), "anydepth_s": round(ours, 2),
                              "ratio": round(theirs / ours, 2)}))  # fmt: skip
        print(json.dumps({"cpu": cpu_model(), "rounds": args.rounds, "ratio_min": round(min(ratios), 2),
                          "ratio_max": round(max(ratios), 2)}))  # fmt: skip
        if args.warm:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.helpers.networks import save_da3_hub_folder

            folder = work / "da3-small"
            folder.mkdir()
            save_da3_hub_folder(folder)
            upstream_python = str(Path(args.upstream_python).absolute())
            warm_ratios = []
            for round_ in range(args.rounds):
                theirs = warm_round(upstream_python, "upstream", folder)
                ours = warm_round(sys.executable, "anydepth", folder)
                warm_ratios.append(theirs["warm_s"] / ours["warm_s"])
                print(json.dumps({"round": round_, "upstream": {k: round(v, 2) for k, v in theirs.items()},
                                  "anydepth": {k: round(v, 2) for k, v in ours.items()},
                                  "warm_ratio": round(warm_ratios[-1], 2)}))  # fmt: skip
            print(json.dumps({"warm_ratio_min": round(min(warm_ratios), 2),
                              "warm_ratio_max": round(max(warm_ratios), 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
