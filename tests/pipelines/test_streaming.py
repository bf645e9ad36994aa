"""The streaming pipeline on the evaluator's synthetic looped walks, with ground truth plus noise as each chunk's
"prediction" (tests/helpers/streaming.py): chunking, alignment accuracy (ATE), loop closure against injected drift,
resuming after an interruption, bounded memory and disk, and loop retrieval with and without faiss."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from anydepth.bench.pose_metrics import trajectory_scores
from anydepth.errors import MissingDependencyError, OptionError
from anydepth.pipelines.streaming import (
    AlignOptions,
    FrameList,
    LoopOptions,
    StreamOptions,
    WorkDir,
    find_loops,
    iter_chunks,
    optimize_pose_graph,
    plan_chunks,
    run_streaming,
    search,
)
from tests.helpers.streaming import NoisyTruth, SyntheticSequence, random_sim3

pytestmark = pytest.mark.torch113  # the inference core on torch 1.13 / Python 3.9 too

FRAMES = 160
ATE_BOUND = 0.03
"""Scene units (the room is 6 x 3 x 6): the pose noise alone (0.005 per axis, 0.1 degree) gives about 0.01."""


@pytest.fixture(scope="module")
def sequence():
    return SyntheticSequence(FRAMES)


def _run(sequence, tmp_path, predictor=None, source=None, disk_budget_gb=None, **options):
    options = {"chunk_size": 30, "overlap": 10, "loop": False, **options}
    predictor = predictor or NoisyTruth(sequence, seed=1)
    work = WorkDir(tmp_path / "work", {"test": 1}, disk_budget_gb)
    source = source or FrameList(list(range(len(sequence))))
    return run_streaming(source, predictor, StreamOptions(**options), work), predictor


def _trajectory(result):
    w2c = np.full((result.num_frames, 3, 4), np.nan)
    for start, pred in result.frames():
        assert np.isnan(w2c[start : start + len(pred)]).all(), "a frame came twice"
        w2c[start : start + len(pred)] = pred.extrinsics
    assert not np.isnan(w2c).any(), "a frame never came"
    return w2c


@pytest.mark.parametrize("frames", [1, 9, 10, 29, 30, 31, 50, 51, 97])
def test_chunks_cover_the_sequence_as_upstream_plans_them(frames):
    planned = plan_chunks(frames, 30, 10)
    streamed = [c for c, _ in iter_chunks(range(frames), 30, 10)]
    assert streamed == planned
    assert planned[0].start == 0 and planned[-1].end == frames
    assert all(b.start == a.end - 10 for a, b in zip(planned, planned[1:]))
    assert len(planned) == 1 if frames <= 30 else all(len(c) > 10 for c in planned)


@pytest.mark.parametrize(("chunk_size", "overlap"), [(10, 10), (10, 12), (10, 0), (1, 0)])
def test_chunking_that_cannot_chain_is_refused(chunk_size, overlap):
    with pytest.raises(OptionError):
        plan_chunks(100, chunk_size, overlap)
    with pytest.raises(OptionError):
        StreamOptions(chunk_size=chunk_size, overlap=overlap).check()


@pytest.mark.parametrize("method", ["sim3", "scale+se3"])
def test_chained_trajectory_matches_the_ground_truth(sequence, tmp_path, method):
    result, predictor = _run(sequence, tmp_path, align=AlignOptions(method=method))
    assert len(result.chunks) == 8 and len(predictor.calls) == 8
    assert max(len(c) for c in predictor.calls) == 30
    scores = trajectory_scores(_trajectory(result), sequence.w2c)
    assert scores.ate_rmse < ATE_BOUND, scores


def test_se3_cannot_undo_a_change_of_scale_between_chunks(sequence, tmp_path):
    """Each chunk comes in its own scale: a rigid alignment leaves the chunks' scales apart (why sim3 is default)."""
    result, _ = _run(sequence, tmp_path, align=AlignOptions(method="se3"))
    assert trajectory_scores(_trajectory(result), sequence.w2c).ate_rmse > 5 * ATE_BOUND


def test_depth_is_scaled_into_the_common_frame(sequence, tmp_path):
    result, _ = _run(sequence, tmp_path)
    for start, pred in result.frames():
        truth = np.stack([sequence.frame(start + i)[0] for i in range(len(pred))])
        valid = truth > 0
        ratio = np.median(pred.depth[valid] / truth[valid])
        assert np.allclose(pred.depth[valid] / truth[valid], ratio, rtol=0.1)  # one scale for every chunk...
        if start == 0:
            first = ratio
    assert ratio == pytest.approx(first, rel=0.05)  # ...the first chunk's


@pytest.mark.parametrize("chunk_size", [FRAMES, FRAMES + 40])
def test_a_sequence_no_longer_than_a_chunk_is_one_chunk(sequence, tmp_path, chunk_size):
    result, predictor = _run(sequence, tmp_path, chunk_size=chunk_size, overlap=10, loop=True)
    assert [(c.start, c.end) for c in result.chunks] == [(0, FRAMES)]
    assert len(predictor.calls) == 1 and not result.loops
    assert np.array_equal(result.transforms, np.eye(4)[None])
    assert trajectory_scores(_trajectory(result), sequence.w2c).ate_rmse < ATE_BOUND


def test_loop_closure_finds_the_loop_and_removes_drift(sequence, tmp_path):
    """Every overlap alignment inherits a 2 degree turn (tests/helpers/streaming.py), 14 degrees over the chain; the
    walk comes back to its start, the loop is found there, and the pose graph takes much of the drift out (what is
    left: the loop's own measurement, turned too, and the chunks' scales, which a Sim(3) graph also moves)."""
    pytest.importorskip("pypose")
    drifting = dict(drift_deg=2.0, seed=2)
    open_loop, _ = _run(sequence, tmp_path / "a", NoisyTruth(sequence, **drifting))
    closed, predictor = _run(sequence, tmp_path / "b", NoisyTruth(sequence, **drifting), loop=True)
    assert closed.loops and closed.search_engine in ("faiss", "numpy")
    ends = closed.loops[0].candidate
    assert ends.later > FRAMES - 15 and ends.earlier < 15, ends  # the walk's end meets its start
    assert len(predictor.calls) == len(closed.chunks) + len(closed.loops)
    assert len(predictor.calls[-1]) == 40  # the loop's mini-chunk: 20 frames around each end, as upstream
    before = trajectory_scores(_trajectory(open_loop), sequence.w2c).ate_rmse
    after = trajectory_scores(_trajectory(closed), sequence.w2c).ate_rmse
    assert before > 2 * ATE_BOUND, before  # the drift is there...
    assert after < 0.7 * before, (before, after)  # ...and the loop closure removes much of it


def test_an_interrupted_run_resumes_without_recomputing_finished_chunks(sequence, tmp_path):
    class Interrupt(Exception):
        pass

    def stop_after_chunk_2(chunk):
        if chunk.index == 2:
            raise Interrupt

    first = NoisyTruth(sequence, seed=1)
    work = WorkDir(tmp_path / "work", {"test": 1})
    with pytest.raises(Interrupt):
        run_streaming(FrameList(list(range(FRAMES))), first, StreamOptions(30, 10, loop=False), work,
                      on_chunk=stop_after_chunk_2)  # fmt: skip
    assert len(first.calls) == 3
    resumed = NoisyTruth(sequence, seed=1)
    result, _ = _run(sequence, tmp_path, resumed)
    assert resumed.calls[0][0] == plan_chunks(FRAMES, 30, 10)[3].start  # chunks 0-2 were not inferred again
    assert len(resumed.calls) == len(result.chunks) - 3
    assert trajectory_scores(_trajectory(result), sequence.w2c).ate_rmse < ATE_BOUND
    again = NoisyTruth(sequence, seed=1)
    _run(sequence, tmp_path, again)
    assert again.calls == []  # a finished run is all on disk


def test_other_settings_start_afresh(sequence, tmp_path):
    _run(sequence, tmp_path)
    work = WorkDir(tmp_path / "work", {"test": 2})
    assert work.finished_chunks() == []


def test_frames_are_read_only_as_the_chunks_need_them(sequence, tmp_path):
    pulled = []

    class CountingSource(FrameList):
        def __iter__(self):
            for frame in self.frames:
                pulled.append(frame)
                yield frame

    seen = []

    class Recorder(NoisyTruth):
        def __call__(self, frames, indices, cameras):
            seen.append((len(pulled), indices[-1] + 1, len(frames)))
            return super().__call__(frames, indices, cameras)

    _run(sequence, tmp_path, Recorder(sequence), source=CountingSource(list(range(FRAMES))))
    for read, needed, held in seen:
        assert read <= needed + 1 and held <= 30  # at most one frame read ahead, one chunk held


def test_the_disk_budget_stops_a_run_after_its_first_chunk(sequence, tmp_path):
    """The first chunk fits in 1.5 MiB, the whole run (about 3 MiB at 48x36) would not: stop before chunk 2."""
    predictor = NoisyTruth(sequence, seed=1)
    with pytest.raises(OptionError, match=r"disk_budget .*would need about 0\.00[2-4]"):
        _run(sequence, tmp_path, predictor, disk_budget_gb=1.5 / 1024)
    assert len(predictor.calls) == 1
    with pytest.raises(OptionError, match=r"disk_budget .* holds"):
        _run(sequence, tmp_path / "small", NoisyTruth(sequence), disk_budget_gb=0.1 / 1024)


def test_known_cameras_are_passed_on_and_chunks_share_their_frame(sequence, tmp_path):
    w2c = np.concatenate((sequence.w2c, np.tile([[[0, 0, 0, 1.0]]], (FRAMES, 1, 1))), axis=1)
    source = FrameList(list(range(FRAMES)), w2c, np.repeat(sequence.K[None], FRAMES, 0))
    received = []

    class PoseConditioned(NoisyTruth):
        def __call__(self, frames, indices, cameras):
            received.append(cameras)
            pred = super().__call__(frames, indices, None)
            pred.extrinsics = cameras[0][:, :3, :4].astype(np.float32)  # reported in the given cameras' frame
            pred.depth = np.stack([self.sequence.frame(i)[0] for i in indices]).astype(np.float32)
            return pred

    result, _ = _run(sequence, tmp_path, PoseConditioned(sequence), source=source, loop=True)
    assert all(c is not None and len(c[0]) == len(c[1]) for c in received)
    assert np.array_equal(result.transforms, np.tile(np.eye(4), (len(result.chunks), 1, 1)))
    assert np.abs(_trajectory(result) - sequence.w2c).max() < 1e-5


def test_numpy_search_agrees_with_faiss():
    pytest.importorskip("faiss")
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims_f, idx_f, engine_f = search(x, 6, prefer_faiss=True)
    sims_n, idx_n, engine_n = search(x, 6, prefer_faiss=False)
    assert (engine_f, engine_n) == ("faiss", "numpy")
    assert np.array_equal(idx_f, idx_n) and np.allclose(sims_f, sims_n, atol=1e-5)
    assert np.array_equal(idx_n[:, 0], np.arange(300))  # each frame is its own best match


def test_loop_candidates_are_filtered_as_upstream():
    rng = np.random.default_rng(1)
    places = rng.normal(size=(40, 32))
    descriptors = places[np.r_[0:40, 0:40]] + 0.05 * rng.normal(size=(80, 32))  # the path passes every place twice
    loops, _ = find_loops(descriptors, LoopOptions(nms_threshold=0))
    assert loops and all(c.later - c.earlier > 10 for c in loops)
    assert all(abs((c.later - c.earlier) - 40) <= 1 for c in loops)  # the same place, one lap apart
    thinned, _ = find_loops(descriptors, LoopOptions(nms_threshold=25))
    assert 1 <= len(thinned) < len(loops)
    for a in thinned:  # no two kept loops have ends within 25 frames of each other
        for b in thinned:
            if a is not b:
                assert min(abs(a.later - b.later), abs(a.earlier - b.earlier)) > 25 or a.later == b.later
    assert find_loops(descriptors, LoopOptions(similarity_threshold=0.9999))[0] == []


def test_pose_graph_spreads_a_loop_error_over_the_chunks():
    pytest.importorskip("pypose")
    rng = np.random.default_rng(3)
    truth = [np.eye(4)] + [random_sim3(rng) for _ in range(7)]
    relative = [np.linalg.inv(truth[k - 1]) @ truth[k] for k in range(1, 8)]
    noisy = [r.copy() for r in relative]
    for r in noisy:
        r[:3, 3] += 0.05  # every overlap alignment a little off: the chained error grows along the chain
    chained = [np.eye(4)]
    for r in noisy:
        chained.append(chained[-1] @ r)
    sequential = [(k - 1, k, noisy[k - 1]) for k in range(1, 8)]
    loop = [(0, 7, np.linalg.inv(truth[0]) @ truth[7])]  # a loop measured exactly
    solved = optimize_pose_graph(np.stack(chained), sequential, loop)
    assert np.array_equal(solved[0], np.eye(4))  # the first chunk's frame stays

    def error(poses):
        return max(np.abs(p - t).max() for p, t in zip(poses, truth))

    assert error(solved) < 0.5 * error(chained)
    assert np.allclose(optimize_pose_graph(np.stack(chained), sequential, []), np.stack(chained))


def test_loop_closure_without_pypose_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pypose", None)
    with pytest.raises(MissingDependencyError, match=r"anydepth\[stream\].*--no-loop"):
        optimize_pose_graph(np.tile(np.eye(4), (3, 1, 1)), [(0, 1, np.eye(4))], [(0, 2, np.eye(4))])
