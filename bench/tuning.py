#!/usr/bin/env python3
"""Plain-path FUSE knobs, each measured against native reads in the same run.

Usage: bench/tuning.py TSR_BINARY WORKDIR  (needs root for drop_caches)
Mounts the same home with --no-passthrough and one knob changed at a time (TSR_MOUNT_TUNING,
docs/PERFORMANCE.md) and prints, per variant, the time of each workload and its ratio to the
same workload on the native files (speed: native time / mount time, higher is better).
"""
import os, subprocess, sys, threading, time
from benchdata import make_models

tsr, work = sys.argv[1], sys.argv[2]
home, native, mnt = f"{work}/home", f"{work}/models", f"{work}/mnt"
env = dict(os.environ, TSR_HOME=home)

VARIANTS = [
    ("defaults", ""),
    ("readdirplus=off", "readdirplus=off"),
    ("kernel caches off (timeouts 0)", "entry_timeout=0,attr_timeout=0,negative_timeout=0"),
    ("max_background=12 (kernel default)", "max_background=12"),
    ("threads=2", "threads=2"),
    ("threads=4", "threads=4"),
]

def drop_caches():
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")

def read_all(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass

def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0

def parallel_reads(paths):
    threads = [threading.Thread(target=read_all, args=(p,)) for p in paths]
    for t in threads: t.start()
    for t in threads: t.join()

def ls(path):
    subprocess.run(["ls", "-l", path], stdout=subprocess.DEVNULL, check=True)

def stats(path, n=50_000):
    for _ in range(n):
        os.stat(path)

def workloads(root):
    """name -> seconds, on a tree rooted at `root` (native or the mount)."""
    big = f"{root}/checkpoints/big.ckpt"
    eight = [f"{root}/loras/par/p{i}.bin" for i in range(8)]
    out = {}
    drop_caches()
    out["first read 1 GiB"] = timed(lambda: read_all(big))
    out["warm reread 1 GiB"] = min(timed(lambda: read_all(big)) for _ in range(2))
    drop_caches()
    out["8 parallel first reads of 64 MiB"] = timed(lambda: parallel_reads(eight))
    out["ls -l 10,000, first"] = timed(lambda: ls(f"{root}/loras/many"))
    out["ls -l 10,000, again"] = min(timed(lambda: ls(f"{root}/loras/many")) for _ in range(2))
    out["stat x50k, cached"] = min(timed(lambda: stats(big)) for _ in range(2))
    return out

make_models(tsr, native, env, parallel_files=8)
os.makedirs(mnt, exist_ok=True)

base = workloads(native)
names = list(base)
results = []
for label, tuning in VARIANTS:
    run_env = dict(env, TSR_MOUNT_TUNING=tuning) if tuning else env
    subprocess.run([tsr, "mount", mnt, "--home", home, "--no-passthrough"], env=run_env, check=True, stdout=subprocess.DEVNULL)
    try:
        results.append((label, workloads(mnt)))
    finally:
        subprocess.run([tsr, "umount", mnt], stdout=subprocess.DEVNULL)

print(f"{'workload':<34} {'native':>8} " + " ".join(f"{label[:18]:>18}" for label, _ in results))
for name in names:
    cells = []
    for _, times in results:
        cells.append(f"{times[name]:.3f}s {base[name] / times[name]:.2f}x".rjust(18))
    print(f"{name:<34} {base[name]:>7.3f}s " + " ".join(cells))
