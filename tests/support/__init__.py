"""Helpers the tests (and bench/) share: media server, processes, the page, Docker, browser."""
