"""This host's address on Docker's default bridge: where containers reach the host.

    python infrastructure/docker/bridge.py      # prints e.g. 172.17.0.1

The bridge network's IPAM config names a gateway only on an engine that has been
restarted; a freshly started one (Debian's dockerd 20.10) lists just the subnet. The
address is always on the bridge's own interface (``docker0`` unless the engine names
another), so that is where it is read when the config does not say.
"""

from __future__ import annotations

import fcntl
import json
import socket
import struct
import subprocess
import sys
from typing import Any

SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address
DEFAULT_INTERFACE = "docker0"


class BridgeError(RuntimeError):
    """The bridge's host address could not be found; the message says why."""


def host_address(network: str = "bridge") -> str:
    """The host's IPv4 address on ``network`` (a Docker bridge network)."""
    return address_from_inspect(inspect(network))


def inspect(network: str) -> dict[str, Any]:
    """``docker network inspect NETWORK`` as a dict."""
    result = subprocess.run(
        ["docker", "network", "inspect", network],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise BridgeError(f"docker network inspect {network} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)[0]


def address_from_inspect(info: dict[str, Any]) -> str:
    """The gateway the IPAM config names, else the address of the bridge's interface."""
    for config in (info.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"]).split("/")[0]
    options = info.get("Options") or {}
    return interface_address(options.get("com.docker.network.bridge.name", DEFAULT_INTERFACE))


def interface_address(name: str) -> str:
    """The IPv4 address of the network interface ``name`` (e.g. ``docker0``)."""
    request = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
        except OSError as exc:
            raise BridgeError(f"interface {name} has no IPv4 address ({exc.strerror})") from None
    return socket.inet_ntoa(answer[20:24])


def main() -> int:
    try:
        print(host_address(*sys.argv[1:2]))
    except BridgeError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
