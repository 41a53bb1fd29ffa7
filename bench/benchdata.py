"""Shared by the mount benchmarks: the native model tree they import and compare against."""
import os, subprocess

def write_random(path, mib):
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))

def make_models(tsr, native, env, parallel_files=0):
    """checkpoints/big.ckpt (1 GiB), loras/many/ (10,000 small files) and, if asked,
    loras/par/p<i>.bin (64 MiB each); imported into the home of `env` by copy."""
    os.makedirs(f"{native}/checkpoints", exist_ok=True)
    os.makedirs(f"{native}/loras/many", exist_ok=True)
    write_random(f"{native}/checkpoints/big.ckpt", 1024)
    for i in range(10_000):
        with open(f"{native}/loras/many/lora{i:05}.pt", "wb") as f:
            f.write(i.to_bytes(4, "little") * 16)
    if parallel_files:
        os.makedirs(f"{native}/loras/par", exist_ok=True)
        for i in range(parallel_files):
            write_random(f"{native}/loras/par/p{i}.bin", 64)
    subprocess.run([tsr, "import", native, "--copy"], env=env, check=True, stdout=subprocess.DEVNULL)
