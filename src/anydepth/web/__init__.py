"""What the web interfaces share: the guards (:mod:`~anydepth.web.security`: path confinement, tokens, safe file
names, upload checks) and the warm-model cache (:mod:`~anydepth.web.models`). The backend service, the gallery and
the web app all use these, and nothing of each other."""
