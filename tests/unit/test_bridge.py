"""infrastructure/docker/bridge.py: the host's address on the Docker bridge, fresh engine or not."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BRIDGE = runpy.run_path(str(Path(__file__).parents[2] / "infrastructure/docker/bridge.py"))

# `docker network inspect bridge` on a freshly started engine (Debian's dockerd 20.10):
# the IPAM config has the subnet only. Here the interface is `lo`, so the test can read it.
FRESH_ENGINE = {
    "Name": "bridge",
    "IPAM": {"Driver": "default", "Options": None, "Config": [{"Subnet": "127.0.0.0/8"}]},
    "Options": {"com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.name": "lo"},
}  # fmt: skip


def test_fresh_engine_reads_the_bridge_interface():
    assert BRIDGE["address_from_inspect"](FRESH_ENGINE) == "127.0.0.1"


def test_restarted_engine_names_the_gateway():
    restarted = FRESH_ENGINE | {
        "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}
    }
    assert BRIDGE["address_from_inspect"](restarted) == "172.17.0.1"


def test_missing_interface_is_a_clear_error():
    gone = FRESH_ENGINE | {"Options": {"com.docker.network.bridge.name": "ytmp3-nosuch0"}}
    with pytest.raises(BRIDGE["BridgeError"], match="ytmp3-nosuch0 has no IPv4 address"):
        BRIDGE["address_from_inspect"](gone)
