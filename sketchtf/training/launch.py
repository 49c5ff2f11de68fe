"""Starts N local worker processes of a training command with a correct TF_CONFIG,
for trying MultiWorkerMirroredStrategy on one machine.

  python -m sketchtf.launch --workers=2 -- --config=configs/sketchnet_qd10.py:smoke --workdir=/tmp/mw

Each worker runs `python -m <module> <args after -->` (module sketchtf.train by
default) with TF_CONFIG = {"cluster": {"worker": [localhost:<free port> x N]},
"task": {"type": "worker", "index": i}}; worker 0 is the chief. When the
arguments carry a --config and no --config.strategy, --config.strategy=multi_worker
is added. Worker output is streamed with a "[worker i]" prefix. If a worker
fails (or is killed), the others are stopped too and the launcher exits with
its code: rerunning the same command resumes from the last finished epoch
(BackupAndRestore in workdir/backup). For a real cluster see docs/distribute.md.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_ports(n: int, host: str = "localhost") -> list:
    """n distinct ports free right now (all held open while choosing, so no repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_configs(addresses: list) -> list:
    """TF_CONFIG JSON strings, one per worker, for a cluster of `addresses`."""
    cluster = {"worker": list(addresses)}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(len(addresses))]


def worker_args(args: list) -> list:
    """The training arguments with --config.strategy=multi_worker added when a
    config is given without a strategy."""
    has_config = any(a == "--config" or a.startswith("--config=") for a in args)
    has_strategy = any(a.startswith("--config.strategy") for a in args)
    return list(args) + (["--config.strategy=multi_worker"] if has_config and not has_strategy else [])


def _stream(proc, prefix, lock):
    for line in iter(proc.stdout.readline, ""):
        with lock:
            sys.stdout.write(f"{prefix}{line}" if line.endswith("\n") else f"{prefix}{line}\n")
            sys.stdout.flush()
    proc.stdout.close()


def _stop(procs, grace):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(args: list, workers: int, *, module: str = "sketchtf.train", host: str = "localhost",
           gpus_per_worker: int = 0, grace_s: float = 10.0) -> int:
    """Runs the workers to completion; returns 0, or the first failing worker's exit code."""
    configs = tf_configs([f"{host}:{p}" for p in free_ports(workers, host)])
    cmd = [sys.executable, "-u", "-m", module] + worker_args(args)
    lock = threading.Lock()
    procs, threads = [], []
    print(f"launch: {workers} workers: {' '.join(cmd)}", flush=True)
    try:
        for i, tf_config in enumerate(configs):
            env = dict(os.environ, TF_CONFIG=tf_config, PYTHONUNBUFFERED="1")
            if gpus_per_worker:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(i * gpus_per_worker,
                                                                              (i + 1) * gpus_per_worker))
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 bufsize=1)
            procs.append(p)
            print(f"launch: worker {i} pid {p.pid} TF_CONFIG={tf_config}", flush=True)
            t = threading.Thread(target=_stream, args=(p, f"[worker {i}] ", lock), daemon=True)
            t.start()
            threads.append(t)
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                print(f"launch: worker {i} exited with {code}; stopping the others "
                      f"(rerun the same command to resume from the last finished epoch)", flush=True)
                _stop(procs, grace_s)
                return code if code > 0 else 128 - code  # -9 (killed) -> 137, as a shell reports it
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs, grace_s)
        return 130
    except BaseException:
        _stop(procs, grace_s)  # never leave orphan workers behind
        raise
    finally:
        for t in threads:
            t.join(timeout=5)
