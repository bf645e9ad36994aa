"""What several test modules share, imported as ``tests.helpers.<module>`` (fixtures live in conftest.py).

- ``paths``: the repository, the package sources and ``tests/fixtures``, wherever the test module sits.
- ``inputs``: synthetic photos, a short video, and the views and cameras of a small scene.
- ``cli``: the command line in-process and the check of its one-line errors.
- ``networks``: tiny Depth Anything V2 and DA3 networks with random weights in the official structure.
- ``checkpoints``: checkpoints in foreign layouts (transformers keys, a huggingface_hub cache folder).
- ``random_weights``: deterministic random weights for any key layout (also used by the fixture scripts).
- ``parity``: the error measures of the parity tests.
- ``vda_fixtures``: the stored Video Depth Anything parity data and the weights it was made with.
- ``backend``: ``anydepth backend`` as a real process on loopback, and the uploads and polls of its clients.
- ``soak``: concurrent clients against a backend killed and restarted mid-run (the test and the benchmark).
- ``synthetic_video``, ``depthcrafter_tiny``, ``gallery_scenes``, ``browser``: what their docstrings say.
"""
