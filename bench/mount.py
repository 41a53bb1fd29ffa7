#!/usr/bin/env python3
"""Mount benchmarks: each number is a ratio against a baseline measured in the same run.

Usage: bench/mount.py TSR_BINARY WORKDIR  (called by bench/run; needs root for drop_caches)
Prints rows: name, baseline, tsr, ratio, goal, result.
"""
import mmap, os, subprocess, sys, time
from benchdata import make_models

tsr, work = sys.argv[1], sys.argv[2]
home, native, mnt = f"{work}/home", f"{work}/models", f"{work}/mnt"
env = dict(os.environ, TSR_HOME=home)
rows = []

def row(name, base, ours, ratio, goal, ok):
    rows.append((name, base, ours, ratio, goal, "ok" if ok else "MISSED"))

def drop_caches():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False

def read_all(path):
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
    return time.perf_counter() - t0

def best(fn, n=3):
    return min(fn() for _ in range(n))

def cold(fn, path, n=2):
    """Best of n first reads, the page cache dropped before each (one slow disk moment aside)."""
    times = []
    for _ in range(n):
        drop_caches()
        times.append(fn(path))
    return min(times)

# Data: one 1 GiB model and a folder of 10,000 small files (kept natively as the baseline).
make_models(tsr, native, env)
os.makedirs(mnt, exist_ok=True)
blob = subprocess.run([tsr, "info", "checkpoints/big.ckpt", "-j"], env=env, capture_output=True, text=True).stdout
digest = blob.split('"sha256" : "')[1][:64]
direct = f"{home}/blobs/sha256/{digest[:2]}/{digest}"
through = f"{mnt}/checkpoints/big.ckpt"

# Safetensors-style load: mmap MAP_PRIVATE and touch every page (what torch/safetensors do).
def mmap_load(path):
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        touched = m[::4096]
        m.close()
    assert len(touched) == (1 << 30) // 4096
    return time.perf_counter() - t0

def mount(*extra):
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([tsr, "mount", mnt, "--home", home, *extra], env=env, check=True, stdout=subprocess.DEVNULL)
    return os.getxattr(mnt, "user.tsr.io").decode()

def umount():
    subprocess.run([tsr, "umount", mnt], stdout=subprocess.DEVNULL)

def reads(path_label, passthrough):
    """Sequential reads and mmap loads of 1 GiB, first (caches dropped) and warm."""
    tag = f" [{path_label}]"
    if drop_caches():
        cold_direct = cold(read_all, direct)
        cold_mount = cold(read_all, through)
        r = cold_direct / cold_mount
        goal = 0.9 if passthrough else 0.25
        row("first read 1 GiB: mount / direct" + tag, f"{cold_direct:.3f}s", f"{cold_mount:.3f}s", f"{r:.2f}", f">={goal}", r >= goal)
    read_all(direct); read_all(through)
    warm_direct = best(lambda: read_all(direct))
    warm_mount = best(lambda: read_all(through))
    r = warm_direct / warm_mount
    row("warm reread 1 GiB: mount / direct" + tag, f"{warm_direct:.3f}s", f"{warm_mount:.3f}s", f"{r:.2f}", ">=0.9" if passthrough else "-", r >= 0.9 or not passthrough)
    if drop_caches():
        cold_direct = cold(mmap_load, direct)
        cold_mount = cold(mmap_load, through)
        r = cold_direct / cold_mount
        row("mmap load 1 GiB, first: mount / direct" + tag, f"{cold_direct:.3f}s", f"{cold_mount:.3f}s", f"{r:.2f}", ">=0.9" if passthrough else "works", r >= 0.9 or not passthrough)
    mmap_load(direct); mmap_load(through)
    warm_direct = best(lambda: mmap_load(direct))
    warm_mount = best(lambda: mmap_load(through))
    r = warm_direct / warm_mount
    row("mmap load 1 GiB, warm: mount / direct" + tag, f"{warm_direct:.3f}s", f"{warm_mount:.3f}s", f"{r:.2f}", ">=0.9" if passthrough else "works", r >= 0.9 or not passthrough)

# The plain path first (--no-passthrough), then the default mount, which uses kernel passthrough
# where the kernel and privileges allow it (the row names say which path was measured).
try:
    io = mount("--no-passthrough")
    reads("plain", False)
finally:
    umount()
io = mount()
try:
    # A read-only view walked once right after mounting (every directory and name resolved by the
    # daemon, nothing cached): by-base/ holds every name under its base, as the native tree does.
    def walk(path):
        t0 = time.perf_counter()
        count = 0
        for root, dirs, files in os.walk(path):
            for name in files:
                os.stat(os.path.join(root, name))
                count += 1
        return time.perf_counter() - t0, count
    mount_walk, mount_count = walk(f"{mnt}/by-base")
    native_walk = min(walk(native)[0] for _ in range(3))
    r = mount_walk / native_walk
    row(f"first walk of by-base/ ({mount_count} names): mount / native (time)", f"{native_walk:.3f}s", f"{mount_walk:.3f}s", f"{r:.2f}", "-", True)
    reads("passthrough" if io == "passthrough" else io, io == "passthrough")
    def open_close(path, n=20_000):
        t0 = time.perf_counter()
        for _ in range(n):
            os.close(os.open(path, os.O_RDONLY))
        return time.perf_counter() - t0
    native_oc = best(lambda: open_close(f"{native}/checkpoints/big.ckpt"))
    mount_oc = best(lambda: open_close(through))
    r = native_oc / mount_oc
    row(f"open+close x20k: mount / native [{'passthrough' if io == 'passthrough' else 'plain'}]", f"{native_oc:.3f}s", f"{mount_oc:.3f}s", f"{r:.2f}", "-", True)
    tracked_oc = mount_oc

    def stats(path, n=100_000):
        os.stat(path)
        t0 = time.perf_counter()
        for _ in range(n):
            os.stat(path)
        return time.perf_counter() - t0
    native_stat = best(lambda: stats(f"{native}/checkpoints/big.ckpt"))
    mount_stat = best(lambda: stats(through))
    r = native_stat / mount_stat
    row("cached stat x100k: mount / native (speed)", f"{native_stat:.3f}s", f"{mount_stat:.3f}s", f"{r:.2f}", ">=0.9", r >= 0.9)

    def ls(path):
        t0 = time.perf_counter()
        subprocess.run(["ls", "-l", path], stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - t0
    ls(f"{native}/loras/many"); ls(f"{mnt}/loras/many")
    native_ls = best(lambda: ls(f"{native}/loras/many"))
    mount_ls = best(lambda: ls(f"{mnt}/loras/many"))
    r = mount_ls / native_ls
    row("ls -l 10,000 entries: mount / native (time)", f"{native_ls:.3f}s", f"{mount_ls:.3f}s", f"{r:.2f}", "<=1.5", r <= 1.5)
finally:
    umount()

# The bounded cache's access tracking (every open of content recorded, written in batches): the
# same open+close loop on a mount with it switched off, the baseline.
env["TSR_MOUNT_TUNING"] = "access_tracking=off"
mount()
try:
    open_close(through)
    untracked_oc = best(lambda: open_close(through))
finally:
    umount()
    del env["TSR_MOUNT_TUNING"]
r = untracked_oc / tracked_oc
row("open+close x20k, access tracking on / off (speed)", f"{untracked_oc:.3f}s", f"{tracked_oc:.3f}s", f"{r:.2f}", ">=0.95", r >= 0.95)

for name, base, ours, ratio, goal, result in rows:
    print(f"{name:<54} {base:>10} {ours:>10} {ratio:>8} {goal:>10} {result:>7}")
