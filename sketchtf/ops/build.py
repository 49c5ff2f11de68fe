"""Compiles ops/*.cc into sketchtf/ops/_sketchtf_ops.so against the installed TF.

Used by setup.py (so `pip install .` builds the ops) and by developers working
from a source tree: `python -m sketchtf.ops.build` builds the library in place.
Files named *_avx2.cc / *_avx512.cc get the matching -m flags; every other file
is compiled for baseline x86-64 and the library dispatches at run time on the
CPU's features (never -march=native in what ships).
"""
import glob
import os
import subprocess
import sys

LIB_NAME = "_sketchtf_ops.so"
ISA_FLAGS = {
    "_avx2.cc": ["-mavx2", "-mfma", "-mpopcnt"],
    "_avx512.cc": ["-mavx512f", "-mavx512bw", "-mavx512vpopcntdq", "-mfma", "-mpopcnt"],
}


def build_ops(src_root: str, out_path: str, verbose: bool = True) -> bool:
    """Builds the library from src_root/ops/*.cc. Returns False if no sources."""
    sources = sorted(glob.glob(os.path.join(src_root, "ops", "*.cc")))
    if not sources:
        return False
    import tensorflow as tf  # a build requirement (pyproject.toml)
    cflags = tf.sysconfig.get_compile_flags()
    lflags = tf.sysconfig.get_link_flags()
    cxx = os.environ.get("CXX", "g++")
    tmp = os.path.join(src_root, "build", "ops")
    os.makedirs(tmp, exist_ok=True)
    objs = []
    for src in sources:
        extra = next((f for suffix, f in ISA_FLAGS.items() if src.endswith(suffix)), [])
        obj = os.path.join(tmp, os.path.basename(src)[:-3] + ".o")
        cmd = [cxx, "-c", src, "-o", obj, "-fPIC", "-O3", "-Wall", "-Wno-deprecated-declarations",
               "-I" + os.path.join(src_root, "ops")] + cflags + extra
        if verbose:
            print(" ".join(cmd), file=sys.stderr)
        subprocess.check_call(cmd)
        objs.append(obj)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    cmd = [cxx, "-shared", "-o", out_path] + objs + lflags
    if verbose:
        print(" ".join(cmd), file=sys.stderr)
    subprocess.check_call(cmd)
    return True


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ok = build_ops(root, os.path.join(root, "sketchtf", "ops", LIB_NAME))
    print("built" if ok else "no op sources in ops/")
