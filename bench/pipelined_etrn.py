"""Pipelined ETRN: sends N ETRNs in one write after EHLO and prints when each reply
arrives, counted from the write (RFC 1985 replies must come at once, in order).

    python3 bench/pipelined_etrn.py [N]
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import start_etrnd  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
routes = "".join(f".c{i}.example smtp-etrn!mx.c{i}.example\n" for i in range(n))
p, port, d = start_etrnd("pipelined-etrn", "GREET_PAUSE=0\n", routes)
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=200)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO bench.example\r\n")
    while f.readline()[3:4] != b" ":
        pass
    t0 = time.monotonic()
    s.sendall(b"".join(f"ETRN c{i}.example\r\n".encode() for i in range(n)))
    for i in range(n):
        line = f.readline().decode().strip()
        print(f"reply {i + 1}: {(time.monotonic() - t0) * 1000:.2f} ms  {line}")
finally:
    p.terminate()
    p.wait()
