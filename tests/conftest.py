"""Shared fixtures: random checkpoints in the official layouts, thread and precision switches, seeded RNGs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.random_weights import random_state_dict


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_report_header(config):
    """The CPU and the precision policy this run tests: results of the tests marked ``precision`` depend on them."""
    import platform

    from anydepth.layers.linear import fused_bf16_linear_supported
    from anydepth.layers.precision import fast_paths_enabled
    from anydepth.pipelines.runtime import auto_picks_cpu_bf16, cpu_bf16_matmul_speedup, cpu_has_fast_bf16

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    get_capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)  # torch >= 2.0
    capability = get_capability() if get_capability is not None else "n/a"
    return [
        f"cpu: {model}; native bf16: {cpu_has_fast_bf16()}"
        + (f" (matmuls {cpu_bf16_matmul_speedup():.1f}x float32's)" if cpu_has_fast_bf16() else "")
        + f"; ATen kernels: {capability}; "
        f"oneDNN fused bf16 linear: {fused_bf16_linear_supported()}",
        f'precision "auto" on the CPU: {"bf16" if auto_picks_cpu_bf16() else "fp32"} (ANYDEPTH_CPU_BF16); '
        f"fast paths: {'on' if fast_paths_enabled() else 'off'} (ANYDEPTH_FAST_PATHS)",
    ]


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vits_weights(tmp_path_factory) -> Path:
    """A random dav2-small checkpoint in the official .pth layout (file name as on the hub)."""
    from anydepth.api import build_network

    net = build_network("dav2-small")
    sd = random_state_dict({k: v.shape for k, v in net.state_dict().items()}, seed=7)
    path = tmp_path_factory.mktemp("weights") / "depth_anything_v2_vits.pth"
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def da3_small_folder(tmp_path_factory):
    """A random da3-small in the hub folder layout: (folder with config.json + model.safetensors, the network)."""
    from tests.helpers.networks import save_da3_hub_folder

    folder = tmp_path_factory.mktemp("DA3-SMALL")
    return folder, save_da3_hub_folder(folder, "da3-small", seed=11)


@pytest.fixture(scope="session")
def depthcrafter_folders(tmp_path_factory):
    """Tiny random DepthCrafter networks in the official layouts: (DepthCrafter repo folder, SVD repo folder)."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from tests.helpers.depthcrafter_tiny import save_official_layout

    return save_official_layout(tmp_path_factory.mktemp("depthcrafter"), seed=0)


@pytest.fixture
def fast_paths_on():
    """For the tests of a fast path itself: on, whatever ANYDEPTH_FAST_PATHS says for the rest of the run."""
    from anydepth.layers.precision import fast_paths

    with fast_paths(True):
        yield


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny networks run many small kernels, which a second thread only slows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Each test starts from the same global torch and numpy RNG state, whatever ran before it.

    Tolerances were chosen on these inputs; without this a test's random input depended on the test order.
    """
    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    yield
