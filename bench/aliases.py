#!/usr/bin/env python3
"""A registry of 1,000,000 aliases: lookup latency through the mount and the daemon's memory.

Usage: bench/aliases.py TSR_BINARY WORKDIR [COUNT]  (called by bench/run; needs /dev/fuse)
Prints rows: name, baseline, tsr, ratio, goal, result. The baseline for lookups is the same
stat of never-seen names in a native directory tree of 10,000 files (same run).
"""
import os, random, sqlite3, subprocess, sys, time

tsr, work = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
home, mnt, native = f"{work}/home-aliases", f"{work}/mnt-aliases", f"{work}/native-aliases"
env = dict(os.environ, TSR_HOME=home)
rows = []

def row(name, base, ours, ratio, goal, ok):
    rows.append((name, base, ours, ratio, goal, "ok" if ok else "MISSED"))

# The registry: tsr creates it; the aliases go in with one transaction (what a large import leaves).
subprocess.run([tsr, "stats"], env=env, check=True, stdout=subprocess.DEVNULL)
db = sqlite3.connect(f"{home}/models.db")
now = time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime())
blobs = [f"{i:064x}" for i in range(1, 1001)]
with db:
    db.executemany("INSERT INTO blobs (sha256, size, state, created_at) VALUES (?, 1000, 'remote', ?)", [(b, now) for b in blobs])
    per_dir = 1000
    db.executemany(
        "INSERT INTO aliases (folder, path, sha256, created_at, updated_at) VALUES ('loras', ?, ?, ?, ?)",
        ((f"set{i // per_dir:04}/lora{i % per_dir:04}.safetensors", blobs[i % len(blobs)], now, now) for i in range(count)))
db.close()

os.makedirs(mnt, exist_ok=True)
t0 = time.perf_counter()
mounted = subprocess.run([tsr, "mount", mnt, "--home", home], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
mount_seconds = time.perf_counter() - t0
if not mounted:
    row(f"mount start, {count:,} aliases (s)", "-", f"{mount_seconds:.1f}", "-", "mounts", False)
    for name, base, ours, ratio, goal, result in rows:
        print(f"{name:<54} {base:>10} {ours:>10} {ratio:>8} {goal:>10} {result:>7}")
    sys.exit(0)
try:
    pid = None
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f"mount\0{mnt}\0".encode() in f.read():
                        pid = int(entry)
            except OSError:
                pass
    # Never-seen names: each stat is a LOOKUP (and the directories' on the way) through the daemon.
    random.seed(7)
    picks = random.sample(range(count), 5000)
    latencies = []
    for i in picks:
        path = f"{mnt}/loras/set{i // 1000:04}/lora{i % 1000:04}.safetensors"
        t = time.perf_counter()
        os.stat(path)
        latencies.append(time.perf_counter() - t)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000

    os.makedirs(native, exist_ok=True)
    for d in range(10):
        os.makedirs(f"{native}/set{d:04}", exist_ok=True)
        for i in range(1000):
            open(f"{native}/set{d:04}/lora{i:04}.safetensors", "wb").close()
    subprocess.run(["sh", "-c", "sync; echo 2 > /proc/sys/vm/drop_caches"], check=False)
    native_latencies = []
    for i in random.sample(range(10_000), 5000):
        t = time.perf_counter()
        os.stat(f"{native}/set{i // 1000:04}/lora{i % 1000:04}.safetensors")
        native_latencies.append(time.perf_counter() - t)
    native_latencies.sort()
    native_p99 = native_latencies[int(len(native_latencies) * 0.99)] * 1000
    row(f"lookup p99, {count:,} aliases (ms)", f"{native_p99:.3f}", f"{p99:.3f}", f"{p99 / native_p99:.2f}", "<1ms", p99 < 1.0)

    rss = 0
    if pid:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
    row(f"daemon RSS, {count:,} aliases (MiB)", "-", f"{rss:.0f}", "-", "<=128", 0 < rss <= 128)
    row(f"mount start, {count:,} aliases (s)", "-", f"{mount_seconds:.1f}", "-", "-", True)
finally:
    subprocess.run([tsr, "umount", mnt], stdout=subprocess.DEVNULL)

for name, base, ours, ratio, goal, result in rows:
    print(f"{name:<54} {base:>10} {ours:>10} {ratio:>8} {goal:>10} {result:>7}")
