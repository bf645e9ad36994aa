"""The backend service: a job API over warm DA3 models (``anydepth backend``; ``pip install 'anydepth[service]'``).

Contract:

- ``app.create_app(settings)`` builds the FastAPI application; ``settings.ServiceSettings`` holds everything it
  is configured with. Nothing here reads environment variables; the CLI (``cli/service.py``) does.
- ``store.JobStore`` is the only state that outlives a process: one SQLite row per job (WAL). A job is
  queued -> running -> done | failed | cancelled; at start, running jobs go back to queued.
- ``worker.WorkerPool`` runs jobs through the same ``jobs.scene.run_scene`` as ``anydepth auto``, so a job's
  exports equal the CLI's; a request's options are validated into the same ``jobs.options.SceneOptions``.
  Exports are written to ``<job>.partial`` and renamed when complete. ``WorkerPool.sweep`` is the one place
  that removes a job's working files (``uploads/<job>``, ``exports/<job>.partial``): whenever a job ends (done,
  failed, cancelled queued or running, deleted), and at start for jobs that ended while the server was down.
- ``web.models.ModelCache`` (shared with the web app) keeps loaded models keyed by (model and weights, runtime
  options), least recently used first out, under a byte budget.
- ``web.security`` holds every check on what a client sends: paths resolved and confined to a root (symlinks
  included), sanitised upload names, tokens, decode-to-validate, pixel limits. Refusals are ``ServiceError``
  with an HTTP status; the app answers every error as JSON ``{"error": ...}`` without a traceback.
- ``client.BackendClient`` (standard library only) is what ``anydepth auto --use-backend`` uses.
- ``upstream`` adds upstream DA3's ``da3 backend`` protocol (``/status``, ``/inference``, ``/task/{id}``, ...) on the
  same queue: requests validated into the same options, server paths confined, errors ``{"detail": ...}`` as
  upstream's (``context.DetailErrorRoute``). ``dashboard`` adds ``/dashboard`` (bundled page polling
  ``/dashboard/data``) and mounts ``anydepth.gallery`` under ``/gallery``. ``context.Backend`` is what these route
  modules see of the running application.
"""
