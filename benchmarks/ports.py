"""Free loopback ports for the processes a benchmark starts."""
import socket
from typing import List


def free_ports(count: int) -> List[int]:
  """`count` distinct ports free on 127.0.0.1 (all held open until each is chosen)."""
  sockets = []
  try:
    for _ in range(count):
      sock = socket.socket()
      sockets.append(sock)
      sock.bind(("127.0.0.1", 0))
    return [sock.getsockname()[1] for sock in sockets]
  finally:
    for sock in sockets:
      sock.close()
