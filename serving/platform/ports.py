"""Free loopback ports for local pods, never handed out twice by one process.

Theory of operation: ask the kernel for a free port by binding 127.0.0.1:0, note the
number, close the socket and hand the number to a child that binds it a moment later.
Two races remain and are handled differently:

- Within this process, the kernel may offer a number we already gave to a pod that has
  not bound it yet (the socket was closed). The reservation set catches that: a number
  in it is skipped and another asked for. Worked example: pod A gets 41001 and closes
  its probe socket; pod B's bind-0 returns 41001 again; 41001 is reserved, so B asks
  again and gets 41002. `release` returns the numbers when the pod's processes are gone.
- Another process on the machine may take the number in between. Nothing here can
  prevent that; the child then fails to bind and exits, which the platform treats like
  any crash (restart after back-off, with fresh ports).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

from .base import PlatformError

__all__ = ["PortAllocator", "ask_kernel_for_port"]

# Asking the kernel this many times without finding an unreserved port means the
# ephemeral range is nearly exhausted by our own reservations: fail loudly.
_MAX_ATTEMPTS = 1000


def ask_kernel_for_port(host: str) -> int:
    """A port the kernel says is free on `host` now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise PlatformError(f"cannot bind {host}:0 to find a free port: {exc}") from exc
        return sock.getsockname()[1]


class PortAllocator:
    """Hands out free 127.0.0.1 ports and remembers them until released."""

    def __init__(self, host: str = "127.0.0.1",
                 ask_kernel: Callable[[str], int] = ask_kernel_for_port) -> None:
        self._host = host
        self._ask_kernel = ask_kernel
        self._reserved: set[int] = set()

    @property
    def reserved(self) -> frozenset[int]:
        """The ports handed out and not yet released."""
        return frozenset(self._reserved)

    def allocate(self, count: int = 1) -> tuple[int, ...]:
        """Reserve `count` distinct free ports; raises PlatformError if none can be found."""
        ports: list[int] = []
        try:
            for _ in range(count):
                ports.append(self._allocate_one())
        except BaseException:
            self.release(ports)
            raise
        return tuple(ports)

    def reserve(self, port: int) -> None:
        """Reserve a fixed port (a pinned user port) so it is not handed out."""
        self._reserved.add(port)

    def release(self, ports: Iterable[int]) -> None:
        """Return ports to the kernel's pool (unknown numbers are ignored)."""
        self._reserved.difference_update(ports)

    def _allocate_one(self) -> int:
        for _ in range(_MAX_ATTEMPTS):
            port = self._ask_kernel(self._host)
            if port not in self._reserved:
                self._reserved.add(port)
                return port
        raise PlatformError(
            f"no free port on {self._host} after {_MAX_ATTEMPTS} tries "
            f"({len(self._reserved)} reserved by local pods)"
        )
