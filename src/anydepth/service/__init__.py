"""The backend service: a job API over warm models (``anydepth backend``; needs ``pip install 'anydepth[service]'``)."""
