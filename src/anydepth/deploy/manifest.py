"""The manifest written beside an exported artefact: what model, what shapes, what preprocessing, what checksum."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from anydepth.errors import InputError, WeightsError

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".json"


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output; ``None`` in ``shape`` marks the dynamic batch axis."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str = "float32"


@dataclass
class Manifest:
    """Everything a runtime needs to feed and read an exported artefact, and to check it is the file exported.

    Attributes:
        model: preset name (``anydepth models``).
        family: "dav2" or "da3".
        format: "onnx", "openvino", "torchscript" or "neuron".
        height, width: the static network input size (multiples of 14).
        batch: the batch the graph was built for (the largest batch a runtime may send when ``dynamic_batch``
            is false; smaller batches are padded).
        dynamic_batch: the batch axis is dynamic (ONNX / OpenVINO only).
        views: views per scene (DA3 any-view); 1 otherwise.
        depth_kind: "disparity", "depth" or "metric" (what the first output holds).
        inputs, outputs: graph tensors in call order.
        preprocessing: how images become the input tensor (colour order, scale, mean/std, resize rule).
        files: artefact file name -> sha256 (OpenVINO has an .xml and a .bin).
        max_depth: range of V2 metric heads in metres.
        ref_view_strategy: DA3 any-view reference-view rule traced into the graph.
        exporter: versions of the tools that wrote the artefact.
    """

    model: str
    family: str
    format: str
    height: int
    width: int
    batch: int
    dynamic_batch: bool
    views: int
    depth_kind: str
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    preprocessing: Dict[str, Any]
    files: Dict[str, str] = field(default_factory=dict)
    max_depth: Optional[float] = None
    ref_view_strategy: Optional[str] = None
    exporter: Dict[str, str] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    @property
    def size(self) -> Tuple[int, int]:
        return self.height, self.width

    @property
    def output_names(self) -> List[str]:
        return [o.name for o in self.outputs]

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
            version = int(data.get("manifest_version", 0))
            if version != MANIFEST_VERSION:
                raise InputError(f"{source}: manifest version {version}; this anydepth reads {MANIFEST_VERSION}")
            for key in ("inputs", "outputs"):
                data[key] = [TensorSpec(t["name"], tuple(t["shape"]), t.get("dtype", "float32")) for t in data[key]]
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{source} is not an anydepth export manifest ({type(exc).__name__}: {exc})") from None


def manifest_path(artefact: Union[str, Path]) -> Path:
    """Where the manifest of ``artefact`` lives: ``model.onnx`` -> ``model.onnx.json``."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + MANIFEST_SUFFIX)


def sha256_file(path: Union[str, Path], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(manifest: Manifest, artefact: Union[str, Path]) -> Path:
    """Hash the artefact's files into ``manifest.files`` and write the manifest beside it (atomically)."""
    artefact = Path(artefact)
    manifest.files = {name: sha256_file(artefact.parent / name) for name in artefact_files(artefact)}
    path = manifest_path(artefact)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(manifest.to_json())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def artefact_files(artefact: Path) -> List[str]:
    """Names of the files that make up an artefact: OpenVINO's IR is an .xml with its .bin of weights."""
    names = [artefact.name]
    if artefact.suffix == ".xml":
        names.append(artefact.with_suffix(".bin").name)
    return names


def resolve_artefact(path: Union[str, Path]) -> Tuple[Path, Path]:
    """(artefact, manifest) for a path to either of them."""
    path = Path(path)
    if path.name.endswith(".xml.json") or path.suffix == MANIFEST_SUFFIX:
        artefact = path.with_name(path.name[: -len(MANIFEST_SUFFIX)])
    else:
        artefact = path
    manifest = manifest_path(artefact)
    if not artefact.is_file():
        raise InputError(f"{artefact}: no such exported model; make one with `anydepth export`")
    if not manifest.is_file():
        raise InputError(f"{artefact} has no manifest beside it ({manifest.name}); re-export it with `anydepth export`")
    return artefact, manifest


def read_manifest(path: Union[str, Path], verify: bool = True) -> Tuple[Path, Manifest]:
    """The artefact and its manifest; with ``verify`` the files must match the manifest's checksums.

    Raises:
        InputError: a missing artefact or manifest, or an unreadable manifest.
        WeightsError: an artefact whose checksum differs from the one recorded at export.
    """
    artefact, mpath = resolve_artefact(path)
    manifest = Manifest.from_json(mpath.read_text(), source=str(mpath))
    if verify:
        for name, expected in manifest.files.items():
            file = artefact.parent / name
            if not file.is_file():
                raise WeightsError(f"{file} is missing (listed in {mpath.name}); re-export the model")
            actual = sha256_file(file)
            if actual != expected:
                raise WeightsError(
                    f"{file} does not match its manifest (sha256 {actual[:12]}..., expected {expected[:12]}...); "
                    "the file changed after export: re-export it"
                )
    return artefact, manifest
