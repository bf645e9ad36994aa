"""The test suite: one folder per package of src/anydepth (geometry/sim3.py is tested in tests/geometry/test_sim3.py;
a file that tests several modules sits in the folder of its main subject), jobs/ for the command line's jobs,
scripts/ for the repository's scripts. Shared helpers: tests.helpers.<module>; shared fixtures: conftest.py; stored
parity data: tests/fixtures (made by scripts/make_*_fixtures.py)."""
