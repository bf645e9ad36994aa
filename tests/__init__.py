"""The test suite, a package so that every test module imports the shared helpers as ``tests.helpers.<module>``."""
