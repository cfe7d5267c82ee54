#!/usr/bin/env python3
"""The disk's durable small-file commit rate: create, write 4 KiB, fsync, rename,
fsync the directory -- the same steps as one etrnd commit without batching.

    bench/fsync_ceiling.py [N] [DIR]
"""
import os, sys, tempfile, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
base = sys.argv[2] if len(sys.argv) > 2 else "/var/tmp"
d = tempfile.mkdtemp(prefix="etrnd-fsync.", dir=base)
tmp, q = os.path.join(d, "tmp"), os.path.join(d, "queue")
os.mkdir(tmp); os.mkdir(q)
data = b"x" * 4096
qfd = os.open(q, os.O_RDONLY)
t0 = time.time()
for i in range(n):
    p = os.path.join(tmp, str(i))
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(p, os.path.join(q, str(i)))
    os.fsync(qfd)
dt = time.time() - t0
print("%d commits in %.2f s: %.0f commits/s (file fsync + rename + dir fsync each)" % (n, dt, n / dt))
for f in os.listdir(q):
    os.unlink(os.path.join(q, f))
os.rmdir(q); os.rmdir(tmp); os.rmdir(d)
