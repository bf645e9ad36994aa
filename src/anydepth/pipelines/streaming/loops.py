"""Loop closure: place retrieval over frame descriptors, upstream's candidate filtering, and the Sim(3) pose graph
over chunks solved by pypose's Levenberg-Marquardt."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from anydepth.errors import MissingDependencyError, OptionError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopOptions:
    """Loop detection and the pose graph, with upstream's names and defaults (``Loop`` section of its config).

    Attributes:
        similarity_threshold: a candidate's descriptor similarity must exceed this (upstream: 0.85).
        top_k: neighbours retrieved per frame (upstream: 5).
        min_gap: frames a loop's two ends must be apart, more than (upstream: 10).
        nms_threshold: after a loop is kept, no other loop may have an end within this many frames of either of its
            ends (upstream: 25; 0 turns the suppression off).
        loop_chunk_size: frames re-inferred around each end of a loop (upstream: 20; a mini-chunk of 40).
        max_iterations: Levenberg-Marquardt iterations of the pose graph (upstream: 30).
    """

    similarity_threshold: float = 0.85
    top_k: int = 5
    min_gap: int = 10
    nms_threshold: int = 25
    loop_chunk_size: int = 20
    max_iterations: int = 30

    def check(self) -> None:
        if not -1.0 <= self.similarity_threshold <= 1.0:
            raise OptionError("loop_threshold", self.similarity_threshold, "a cosine similarity lies in [-1, 1]")
        if self.top_k < 1:
            raise OptionError("loop_top_k", self.top_k, "retrieve at least one neighbour")
        if self.loop_chunk_size < 2:
            raise OptionError("loop_chunk_size", self.loop_chunk_size, "re-infer at least 2 frames per loop")


@dataclass(frozen=True)
class LoopCandidate:
    """Frames ``later`` and ``earlier`` look at the same place (``later > earlier``)."""

    later: int
    earlier: int
    similarity: float


def normalise_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """Centre descriptors on the sequence's mean and scale them to unit length.

    Averaged ViT tokens share a large component whatever the image (their cosine similarity is near 1 for any two
    frames); taking the sequence's mean away leaves what tells places apart, so a fixed threshold means something.
    """
    x = np.asarray(descriptors, np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def search(descriptors: np.ndarray, k: int, prefer_faiss: bool = True) -> Tuple[np.ndarray, np.ndarray, str]:
    """Exact inner-product search of every descriptor among all: (similarities (N, k), indices (N, k), engine).

    faiss (``IndexFlatIP``, as upstream) when it is installed (``pip install 'anydepth[stream]'``), else the same
    exact search in NumPy; ``engine`` says which ran ("faiss" or "numpy"). Both rank a frame itself first.
    """
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    k = min(k, len(x))
    if prefer_faiss:
        try:
            import faiss
        except ImportError:
            pass
        else:
            index = faiss.IndexFlatIP(x.shape[1])
            index.add(x)
            similarities, indices = index.search(x, k)
            return similarities, indices.astype(np.int64), "faiss"
    similarities = np.empty((len(x), k), np.float32)
    indices = np.empty((len(x), k), np.int64)
    for start in range(0, len(x), 1024):  # blocks keep the similarity matrix small for long sequences
        block = x[start : start + 1024] @ x.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(block, top, axis=1), axis=1, kind="stable")
        indices[start : start + 1024] = np.take_along_axis(top, order, axis=1)
        similarities[start : start + 1024] = np.take_along_axis(block, indices[start : start + 1024], axis=1)
    return similarities, indices, "numpy"


def find_loops(
    descriptors: np.ndarray, options: LoopOptions, prefer_faiss: bool = True
) -> Tuple[List[LoopCandidate], str]:
    """Loop candidates as upstream's detector picks them: each frame's ``top_k`` nearest others, kept where the
    similarity exceeds the threshold and the frames are more than ``min_gap`` apart, strongest first, thinned by
    non-maximum suppression. Returns the candidates and the search engine that ran."""
    x = normalise_descriptors(descriptors)
    similarities, indices, engine = search(x, options.top_k + 1, prefer_faiss)
    found = {}
    for i in range(len(x)):
        for sim, j in zip(similarities[i], indices[i]):
            if j == i or j < 0 or sim <= options.similarity_threshold or abs(i - int(j)) <= options.min_gap:
                continue
            pair = (max(i, int(j)), min(i, int(j)))
            found[pair] = max(found.get(pair, -1.0), float(sim))
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    loops = [LoopCandidate(a, b, s) for (a, b), s in ranked]
    return (suppress(loops, options.nms_threshold) if options.nms_threshold > 0 else loops), engine


def suppress(loops: Sequence[LoopCandidate], radius: int) -> List[LoopCandidate]:
    """Upstream's non-maximum suppression: strongest first; a kept loop suppresses every frame within ``radius`` of
    either end, and a loop with a suppressed end is dropped."""
    kept: List[LoopCandidate] = []
    suppressed = set()
    for loop in sorted(loops, key=lambda c: -c.similarity):
        if loop.later in suppressed or loop.earlier in suppressed:
            continue
        kept.append(loop)
        for end in (loop.later, loop.earlier):
            suppressed.update(range(end - radius, end + radius + 1))
    return kept


def optimize_pose_graph(
    absolute: np.ndarray,
    sequential: Sequence[Tuple[int, int, np.ndarray]],
    loops: Sequence[Tuple[int, int, np.ndarray]],
    max_iterations: int = 30,
) -> np.ndarray:
    """Sim(3) pose graph over chunks, solved by Levenberg-Marquardt (pypose's ``optim.LM``), first chunk held fixed.

    Node ``k`` is chunk ``k``'s transform into the first chunk's frame, ``T_k``. An edge ``(i, j, M)`` says
    ``T_i^-1 T_j = M`` (``M`` takes chunk ``j``'s coordinates into chunk ``i``'s); its residual is
    ``Log(M^-1 T_i^-1 T_j)`` in sim(3). Sequential edges come from the overlaps, loop edges from the loops'
    mini-chunks; all weigh the same, as upstream.

    Args:
        absolute: (K, 4, 4) initial ``T_k`` (the chained alignments).
        sequential, loops: edges ``(i, j, (4, 4) M)``.
        max_iterations: LM iterations at most (stops early once the cost stops falling).

    Returns:
        (K, 4, 4) optimised ``T_k``.

    Raises:
        MissingDependencyError: pypose is not installed (``pip install 'anydepth[stream]'``).
    """
    try:
        import pypose as pp
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            "loop closure needs pypose; install it with: pip install 'anydepth[stream]' (or run with --no-loop)"
        ) from exc
    from anydepth.geometry.sim3 import Sim3

    edges = list(sequential) + list(loops)
    if len(absolute) < 2 or not loops:
        return np.asarray(absolute, np.float64).copy()

    def to_pp(matrices: np.ndarray) -> pp.LieTensor:
        sim3 = Sim3.from_matrix(torch.from_numpy(np.asarray(matrices, np.float64)))
        quat = pp.mat2SO3(sim3.rotation, check=False).tensor()  # (x, y, z, w)
        return pp.Sim3(torch.cat((sim3.translation, quat, sim3.scale[..., None]), dim=-1))

    nodes = to_pp(absolute)
    first = nodes[:1].clone()
    i = torch.tensor([e[0] for e in edges])
    j = torch.tensor([e[1] for e in edges])
    measured = to_pp(np.stack([e[2] for e in edges]))

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.free = pp.Parameter(nodes[1:].clone())

        def forward(self, measured: pp.LieTensor) -> torch.Tensor:
            all_nodes = torch.cat((first, self.free), dim=0)
            all_nodes = pp.Sim3(all_nodes)
            error = measured.Inv() @ all_nodes[i].Inv() @ all_nodes[j]
            return error.Log().tensor()

    graph = Graph()
    optimizer = pp.optim.LM(
        graph, solver=pp.optim.solver.Cholesky(), strategy=pp.optim.strategy.TrustRegion(radius=1e4), vectorize=True
    )
    previous = float("inf")
    for iteration in range(max_iterations):
        cost = float(optimizer.step(input=(measured,)))
        logger.debug("pose graph iteration %d: cost %.3e", iteration, cost)
        if cost < 1e-12 or previous - cost < 1e-9 * max(previous, 1e-30):
            break
        previous = cost
    with torch.no_grad():
        solved = torch.cat((first, graph.free.detach()), dim=0)
        return pp.Sim3(solved).matrix().double().numpy()
