"""Long-video reconstruction (DA3-Streaming's method) in bounded memory: chunks, Sim(3) chaining, loop closure.

- :mod:`.chunks`: chunk planning and which chunk owns each frame;
- :mod:`.sources`: frames from a list (images, COLMAP) or a video decoded lazily;
- :mod:`.predictors`: one chunk's prediction, and the DA3 model as a chunk predictor;
- :mod:`.align`: the robust Sim(3) between two inferences of the same frames;
- :mod:`.loops`: loop retrieval (faiss or NumPy), upstream's filtering, the pypose Sim(3) pose graph;
- :mod:`.store`: the resumable work folder and its disk budget;
- :mod:`.pipeline`: the run that ties them together.
"""

from anydepth.pipelines.streaming.align import Alignment, AlignOptions, align_views, transform_prediction
from anydepth.pipelines.streaming.chunks import Chunk, iter_chunks, owned_range, plan_chunks
from anydepth.pipelines.streaming.loops import LoopCandidate, LoopOptions, find_loops, optimize_pose_graph, search
from anydepth.pipelines.streaming.pipeline import LoopClosure, StreamOptions, StreamResult, run_streaming
from anydepth.pipelines.streaming.predictors import ChunkPrediction, ChunkPredictor, DA3ChunkPredictor
from anydepth.pipelines.streaming.sources import FrameList, VideoFrames
from anydepth.pipelines.streaming.store import WorkDir

__all__ = [
    "AlignOptions",
    "Alignment",
    "Chunk",
    "ChunkPrediction",
    "ChunkPredictor",
    "DA3ChunkPredictor",
    "FrameList",
    "LoopCandidate",
    "LoopClosure",
    "LoopOptions",
    "StreamOptions",
    "StreamResult",
    "VideoFrames",
    "WorkDir",
    "align_views",
    "find_loops",
    "iter_chunks",
    "optimize_pose_graph",
    "owned_range",
    "plan_chunks",
    "run_streaming",
    "search",
    "transform_prediction",
]
