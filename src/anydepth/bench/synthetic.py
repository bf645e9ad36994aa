"""Synthetic ground truth: procedural scenes ray cast to RGB with exact depth, cameras and validity.

A scene is a list of primitives (planes with a procedural texture, axis-aligned boxes, spheres) and, outdoors, a
sky at infinity. Each pixel's ray is intersected with every primitive in NumPy; the nearest hit gives the z-depth
(along the camera's optical axis, not along the ray), its colour comes from the primitive's texture at the hit
point, shaded by the angle to a fixed light. Sky pixels have no depth (``valid`` False, depth 0).

Cameras are OpenCV: world-to-camera extrinsics (3, 4), intrinsics in pixels, x right, y down, z forward.
Everything is deterministic from the seed. Scenes come as:

- :func:`indoor_scene`: a room (floor, ceiling, four walls) with boxes and spheres in it;
- :func:`outdoor_scene`: a textured ground plane with boxes ("buildings") and spheres, under the sky;
- :func:`orbit`: views on an arc around a point (multi-view scenes);
- :func:`walk`: a smooth video trajectory, optionally a closed loop that comes back to its start.

:func:`write_ground_truth` stores frames in the ground-truth layout the evaluator reads::

    <folder>/images/000000.png        RGB, 8 bit
    <folder>/depth/000000.npy         (H, W) float32 z-depth in scene units; 0 where there is none
    <folder>/cameras.npz              extrinsics (N, 3, 4) w2c, intrinsics (N, 3, 3), image_names (N,)
    <folder>/scene.json               the generator's name, seed, size and units
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from anydepth.errors import InputError

SKY_TOP = np.array([0.35, 0.55, 0.9])
SKY_HORIZON = np.array([0.8, 0.88, 0.95])
_LIGHT = np.array([0.4, -0.8, 0.45]) / np.linalg.norm([0.4, -0.8, 0.45])


@dataclass(frozen=True)
class Texture:
    """A procedural texture: two colours in a checker of ``scale`` units, plus value noise of ``noise`` amplitude
    (fixed per texture by ``seed``) so that every surface has features to match."""

    color_a: Tuple[float, float, float]
    color_b: Tuple[float, float, float]
    scale: float = 0.5
    noise: float = 0.15
    seed: int = 0

    def sample(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) colours in [0, 1]."""
        cells = np.floor(points / self.scale).astype(np.int64)
        checker = (cells.sum(axis=1) % 2).astype(np.float64)[:, None]
        color = (1 - checker) * np.array(self.color_a) + checker * np.array(self.color_b)
        # value noise: a hash of the fine cell, fixed by the seed
        fine = np.floor(points / (self.scale / 4)).astype(np.int64)
        h = (fine[:, 0] * 73856093) ^ (fine[:, 1] * 19349663) ^ (fine[:, 2] * 83492791) ^ (self.seed * 2654435761)
        jitter = ((h % 1000) / 999.0 - 0.5)[:, None] * self.noise
        return np.clip(color + jitter, 0.0, 1.0)


@dataclass(frozen=True)
class Plane:
    """Points ``x`` with ``normal . x = offset``; ``normal`` points to the side that is seen."""

    normal: Tuple[float, float, float]
    offset: float
    texture: Texture


@dataclass(frozen=True)
class Box:
    """An axis-aligned box between two corners."""

    low: Tuple[float, float, float]
    high: Tuple[float, float, float]
    texture: Texture


@dataclass(frozen=True)
class Sphere:
    centre: Tuple[float, float, float]
    radius: float
    texture: Texture


Primitive = Union[Plane, Box, Sphere]


@dataclass(frozen=True)
class Scene:
    """Primitives, whether rays that hit none see the sky (outdoor; a closed room has no such ray), and the
    z-depth beyond which surfaces count as sky."""

    name: str
    seed: int
    primitives: Tuple[Primitive, ...]
    sky: bool
    centre: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    extent: float = 3.0
    far: float = np.inf  # z-depth beyond which a surface counts as sky (outdoor: the horizon's haze)


@dataclass
class Frame:
    """One rendered view."""

    image: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32, 0 where invalid
    valid: np.ndarray  # (H, W) bool
    extrinsics: np.ndarray  # (3, 4) w2c
    intrinsics: np.ndarray  # (3, 3)
    name: str = ""
    meta: dict = field(default_factory=dict)


def _texture(rng: np.random.Generator) -> Texture:
    a = rng.uniform(0.15, 0.9, 3)
    b = np.clip(a * rng.uniform(0.4, 0.8) + rng.uniform(-0.1, 0.1, 3), 0, 1)
    return Texture(tuple(a), tuple(b), scale=float(rng.uniform(0.2, 0.8)), seed=int(rng.integers(1 << 30)))


def indoor_scene(seed: int = 0, size: Tuple[float, float, float] = (6.0, 3.0, 6.0), objects: int = 6) -> Scene:
    """A room ``size`` = (width x, height y, depth z) centred on the origin (floor at y = +height/2: y points down,
    as in OpenCV cameras standing upright), with ``objects`` boxes and spheres on the floor."""
    rng = np.random.default_rng(seed)
    w, h, d = size
    walls: List[Primitive] = [
        Plane((0.0, -1.0, 0.0), -h / 2, _texture(rng)),  # floor, seen from above (y = +h/2)
        Plane((0.0, 1.0, 0.0), -h / 2, _texture(rng)),  # ceiling (y = -h/2)
        Plane((1.0, 0.0, 0.0), -w / 2, _texture(rng)),
        Plane((-1.0, 0.0, 0.0), -w / 2, _texture(rng)),
        Plane((0.0, 0.0, 1.0), -d / 2, _texture(rng)),
        Plane((0.0, 0.0, -1.0), -d / 2, _texture(rng)),
    ]
    return Scene(f"indoor-{seed}", seed, tuple(walls + _objects(rng, objects, w, d, h / 2)), sky=False,
                 extent=float(min(w, d) / 2))  # fmt: skip


def outdoor_scene(seed: int = 0, objects: int = 10, spread: float = 12.0) -> Scene:
    """A ground plane (y = 1.5 below the origin) with ``objects`` boxes and spheres within ``spread`` units,
    under the sky; ground beyond 80 units (z-depth) is hazed into the sky and has no depth, as in KITTI's range."""
    rng = np.random.default_rng(seed)
    ground = Plane((0.0, -1.0, 0.0), -1.5, _texture(rng))
    prims = _objects(rng, objects, spread, spread, 1.5, tall=True)
    return Scene(f"outdoor-{seed}", seed, (ground, *prims), sky=True, extent=spread / 2, far=80.0)


def _objects(rng: np.random.Generator, n: int, w: float, d: float, floor_y: float, tall: bool = False) -> list:
    prims: List[Primitive] = []
    for _ in range(n):
        x, z = rng.uniform(-w / 2 + 0.5, w / 2 - 0.5), rng.uniform(-d / 2 + 0.5, d / 2 - 0.5)
        if abs(x) < 0.8 and abs(z) < 0.8:  # keep the middle free for cameras
            x += 1.6 * np.sign(x or 1.0)
        if rng.random() < 0.6:
            sx, sz = rng.uniform(0.2, 0.6, 2)
            sy = rng.uniform(0.3, 2.5 if tall else 1.2)
            prims.append(Box((x - sx, floor_y - sy, z - sz), (x + sx, floor_y, z + sz), _texture(rng)))
        else:
            r = float(rng.uniform(0.2, 0.6))
            prims.append(Sphere((x, floor_y - r, z), r, _texture(rng)))
    return prims


def intrinsics_for(width: int, height: int, fov_deg: float = 60.0) -> np.ndarray:
    """Pinhole intrinsics with a horizontal field of view of ``fov_deg`` and the principal point at the centre."""
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, -1.0, 0.0)) -> np.ndarray:
    """The (3, 4) world-to-camera pose of a camera at ``eye`` looking at ``target`` (OpenCV axes; ``up`` is the
    world's up, -y here, so the image's y runs down)."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise InputError("the camera looks along the up direction; move the target")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return np.concatenate([R, (-R @ eye)[:, None]], axis=1)


def orbit(scene: Scene, views: int, radius: Optional[float] = None, arc_deg: float = 90.0, height: float = -0.2,
          seed: int = 0) -> List[np.ndarray]:  # fmt: skip
    """``views`` cameras on an arc of ``arc_deg`` degrees around the scene's centre, looking at it with a little
    random jitter (seeded)."""
    rng = np.random.default_rng(seed)
    radius = 0.6 * scene.extent if radius is None else radius
    start = rng.uniform(0, 360)
    poses = []
    for k in range(views):
        a = np.radians(start + arc_deg * k / max(views - 1, 1))
        eye = np.array(scene.centre) + np.array([radius * np.cos(a), height, radius * np.sin(a)])
        target = np.array(scene.centre) + rng.normal(0.0, 0.15, 3) * [1, 0.3, 1]
        poses.append(look_at(eye, target))
    return poses


def walk(
    scene: Scene, frames: int, loop: bool = False, radius: Optional[float] = None, seed: int = 0
) -> List[np.ndarray]:
    """A smooth trajectory of ``frames`` poses: a wavy path through the scene, or with ``loop`` one full circle
    that ends where it started (for loop closure), each camera looking ahead and a little inward."""
    rng = np.random.default_rng(seed)
    radius = 0.5 * scene.extent if radius is None else radius
    phase = rng.uniform(0, 2 * np.pi)
    span = 2 * np.pi if loop else np.radians(120)
    poses = []
    for k in range(frames):
        t = phase + span * k / (frames if loop else max(frames - 1, 1))
        wobble = 0.1 * np.sin(3 * t)
        r = radius + wobble
        eye = np.array(scene.centre) + np.array([r * np.cos(t), -0.2 + 0.05 * np.sin(2 * t), r * np.sin(t)])
        ahead = np.array(scene.centre) + 0.3 * radius * np.array(
            [np.cos(t + 1.2), -0.1 / (0.3 * radius), np.sin(t + 1.2)]
        )
        poses.append(look_at(eye, ahead))
    return poses


def _intersect(prim: Primitive, origin: np.ndarray, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Ray distance to ``prim`` (inf where missed) and the surface normal there, for rays ``origin + s * dirs``."""
    n_rays = len(dirs)
    if isinstance(prim, Plane):
        n = np.asarray(prim.normal, np.float64)
        denom = dirs @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (prim.offset - origin @ n) / denom
        s = np.where((denom < -1e-12) & (s > 1e-6), s, np.inf)  # only from the side the normal faces
        return s, np.broadcast_to(n, (n_rays, 3))
    if isinstance(prim, Sphere):
        oc = origin - np.asarray(prim.centre)
        b = dirs @ oc
        c = oc @ oc - prim.radius**2
        disc = b * b - c
        root = np.sqrt(np.maximum(disc, 0.0))
        s = np.where(-b - root > 1e-6, -b - root, -b + root)
        s = np.where((disc >= 0) & (s > 1e-6), s, np.inf)
        hit = origin + dirs * np.where(np.isfinite(s), s, 0.0)[:, None]
        return s, (hit - np.asarray(prim.centre)) / prim.radius
    low, high = np.asarray(prim.low), np.asarray(prim.high)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t0, t1 = (low - origin) * inv, (high - origin) * inv
    t_near = np.nanmax(np.minimum(t0, t1), axis=1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=1)
    s = np.where((t_far >= t_near) & (t_near > 1e-6), t_near, np.inf)
    axis = np.nanargmax(np.minimum(t0, t1), axis=1)
    normal = np.zeros((n_rays, 3))
    normal[np.arange(n_rays), axis] = -np.sign(dirs[np.arange(n_rays), axis])
    return s, normal


def render(scene: Scene, extrinsics: np.ndarray, intrinsics: np.ndarray, width: int, height: int) -> Frame:
    """One view of ``scene``: RGB, z-depth and validity, from a (3, 4) w2c pose and (3, 3) intrinsics."""
    extrinsics, K = np.asarray(extrinsics, np.float64), np.asarray(intrinsics, np.float64)
    R, t = extrinsics[:, :3], extrinsics[:, 3]
    origin = -R.T @ t
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    dirs = rays_cam @ R  # to the world: R^T @ d for each row
    norm = np.linalg.norm(dirs, axis=1, keepdims=True)
    dirs = dirs / norm
    best = np.full(len(dirs), np.inf)
    colour = np.zeros((len(dirs), 3))
    for prim in scene.primitives:
        s, normal = _intersect(prim, origin, dirs)
        closer = s < best
        if not closer.any():
            continue
        best[closer] = s[closer]
        hit = origin + dirs[closer] * s[closer, None]
        shade = 0.35 + 0.65 * np.clip(normal[closer] @ -_LIGHT, 0.0, 1.0)
        colour[closer] = prim.texture.sample(hit) * shade[:, None]
    valid = np.isfinite(best) & (best / norm[:, 0] < scene.far)
    if scene.sky:
        up = np.clip(-dirs[:, 1], 0.0, 1.0)[:, None]  # world up is -y
        colour[~valid] = (SKY_HORIZON * (1 - up) + SKY_TOP * up)[~valid]
    depth = np.where(valid, best / norm[:, 0], 0.0)  # along the ray -> along the optical axis
    image = np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(height, width, 3)
    return Frame(image, depth.reshape(height, width).astype(np.float32), valid.reshape(height, width),
                 extrinsics[:, :4].copy(), K.copy())  # fmt: skip


def render_views(scene: Scene, poses: Sequence[np.ndarray], width: int = 256, height: int = 192,
                 fov_deg: float = 60.0) -> Iterator[Frame]:  # fmt: skip
    """The frames of ``poses``, one at a time (memory stays flat for long trajectories)."""
    K = intrinsics_for(width, height, fov_deg)
    for index, pose in enumerate(poses):
        frame = render(scene, pose, K, width, height)
        frame.name = f"{index:06d}"
        yield frame


def write_ground_truth(folder: Union[str, Path], frames: Iterator[Frame], scene: Optional[Scene] = None) -> Path:
    """Write frames in the ground-truth layout (see the module docstring); returns the folder."""
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(exist_ok=True)
    extrinsics, intrinsics, names = [], [], []
    size = None
    for frame in frames:
        Image.fromarray(frame.image).save(folder / "images" / f"{frame.name}.png")
        np.save(folder / "depth" / f"{frame.name}.npy", np.where(frame.valid, frame.depth, 0.0).astype(np.float32))
        extrinsics.append(frame.extrinsics)
        intrinsics.append(frame.intrinsics)
        names.append(f"{frame.name}.png")
        size = frame.image.shape[:2]
    if not names:
        raise InputError("no frame to write")
    np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=np.stack(intrinsics),
             image_names=np.array(names))  # fmt: skip
    meta = {"frames": len(names), "height": size[0], "width": size[1], "units": "scene units (metres-like)",
            "depth": "z-depth along the optical axis, 0 where there is none (sky)"}  # fmt: skip
    if scene is not None:
        meta.update(generator=scene.name, seed=scene.seed, sky=scene.sky)
    (folder / "scene.json").write_text(json.dumps(meta, indent=1))
    return folder


KINDS = ("indoor", "outdoor", "video", "loop")
"""Synthetic datasets: multi-view scenes indoors or outdoors (an orbit of views), a video walk through a room, or a
long walk that closes a loop."""


def make_dataset(
    root: Union[str, Path], kind: str = "indoor", scenes: int = 4, views: int = 8, width: int = 256,
    height: int = 192, seed: int = 0,
) -> List[Path]:  # fmt: skip
    """Write ``scenes`` ground-truth folders ``<root>/<kind>-<seed + i>`` (see :func:`write_ground_truth`), each
    from its own seed; folders already complete are kept (the same seed gives the same scene). Returns them."""
    if kind not in KINDS:
        raise InputError(f"unknown synthetic kind {kind!r}; choose one of {', '.join(KINDS)}")
    if scenes < 1 or views < 2:
        raise InputError("a synthetic dataset needs at least one scene of two views")
    folders = []
    for index in range(scenes):
        scene_seed = seed + index
        folder = Path(root) / f"{kind}-{scene_seed:04d}"
        folders.append(folder)
        if (folder / "scene.json").is_file():
            continue
        scene = outdoor_scene(scene_seed) if kind == "outdoor" else indoor_scene(scene_seed)
        if kind in ("indoor", "outdoor"):
            poses = orbit(scene, views, seed=scene_seed)
        else:
            poses = walk(scene, views, loop=kind == "loop", seed=scene_seed)
        write_ground_truth(folder, render_views(scene, poses, width, height), scene)
    return folders
