"""Benchmarks (not tests): ``.venv/bin/python bench/flash_crowd.py --help``."""
