"""The web app (``anydepth app``; ``pip install 'anydepth[app]'``): upload images or a video, get depth and a scene.

Contract:

- ``runner.run_job(settings, cache, files, options)`` does one run without any UI: checks and copies the uploads
  under sanitised names, samples a video into frames, runs the model (``jobs.scene.run_scene`` for DA3 models, the
  V2 image path ``jobs.images.run_images`` for ``dav2-*``), and zips the exports. It raises ``AnyDepthError`` with a
  one-line message on bad input. It never imports gradio, so it is tested directly.
- ``ui.create_app(settings)`` builds the Gradio Blocks around it (gradio is imported there, lazily);
  ``ui.launch`` serves them on loopback by default with the upload limits of the settings.
"""
