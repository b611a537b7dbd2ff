#!/usr/bin/env python3
"""Registers, spills and shared memory of every reef kernel, from NVRTC's
ptxas report (no GPU needed, only libnvrtc.so: e.g. the `nvidia-cuda-nvrtc`
wheel, with its lib folder on LD_LIBRARY_PATH).

    python3 scripts/nvrtc_usage.py [--arch sm_90a] [--define NAME=VALUE ...]
                                   [--sass PATH/TO/nvdisasm [--sass-out FILE]]

Compiles crates/reef-cuda/kernels/*.cu as one program, in the order and with
the options of crates/reef-cuda/src/kernels.rs, and prints one line per
entry point, RT and BE variants side by side.

With --sass (nvdisasm, e.g. from the `nvidia-cuda-nvdisasm` wheel), it also
disassembles the CUBIN and prints, per GEMM family, the static size of the
innermost loop that holds tensor-core instructions (the K loop) in RT and
BE: how many instructions surround the HMMAs (docs/PERF.md, Session 6).
A static count covers every branch of the loop, not what one launch runs.
"""
import argparse
import ctypes
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ["common.cu", "gemm.cu", "elementwise.cu", "rows.cu", "attention.cu"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--define", action="append", default=[])
    ap.add_argument("--sass", metavar="NVDISASM", help="nvdisasm binary: also report the K loops' SASS size")
    ap.add_argument("--sass-out", metavar="PATH", help="with --sass: also write the whole disassembly to PATH")
    a = ap.parse_args()
    src = ""
    for name in SOURCES:
        src += f"// ---- {name} ----\n" + (ROOT / "crates/reef-cuda/kernels" / name).read_text() + "\n"
    opts = [f"--gpu-architecture={a.arch}", "--std=c++17", "--fmad=false", "--prec-div=true",
            "--prec-sqrt=true", "--ftz=false", "--ptxas-options=-v"] + [f"-D{d}" for d in a.define]
    lib = ctypes.CDLL("libnvrtc.so.13")
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"reef_kernels.cu", 0, None, None)
    assert rc == 0, rc
    arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, buf)
    log = buf.value.decode(errors="replace")
    if rc != 0:
        print(log)
        sys.exit(f"compile failed ({rc})")
    usage = {}
    cur = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line) or re.search(r"Function properties for (\w+)", line)
        if m:
            cur = m.group(1)
            usage.setdefault(cur, {})
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and cur:
            usage[cur].update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m and cur:
            usage[cur]["regs"] = int(m.group(1))
            m2 = re.search(r"(\d+) bytes smem", line)
            usage[cur]["smem"] = int(m2.group(1)) if m2 else 0
    bases = sorted({k[:-3] for k in usage if k.endswith("_rt") or k.endswith("_be")})
    print(f"{'family':<22} {'RT regs':>7} {'BE regs':>7} {'RT spill':>9} {'BE spill':>9} {'RT smem':>8} {'BE smem':>8}")
    for b in bases:
        r, e = usage.get(b + "_rt", {}), usage.get(b + "_be", {})
        sp = lambda u: f"{u.get('spill_st', 0)}/{u.get('spill_ld', 0)}"
        print(f"{b:<22} {r.get('regs', '-'):>7} {e.get('regs', '-'):>7} {sp(r):>9} {sp(e):>9} {r.get('smem', '-'):>8} {e.get('smem', '-'):>8}")
    if a.sass:
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        cubin = ctypes.create_string_buffer(size.value)
        assert lib.nvrtcGetCUBIN(prog, cubin) == 0
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin.raw)
            f.flush()
            sass = subprocess.run([a.sass, "-c", f.name], check=True, capture_output=True, text=True).stdout
        if a.sass_out:
            pathlib.Path(a.sass_out).write_text(sass)
        print_k_loops(sass)


def k_loops(sass):
    """Per function: (instructions, HMMAs) of each loop (a backward branch
    to a label) whose body holds an HMMA, innermost (smallest) first."""
    loops = {}
    name, instrs, labels = None, [], {}

    def close():
        if name is None:
            return
        found = []
        for i, ins in enumerate(instrs):
            m = re.search(r"BRA\s+`\((\.L_x_\d+)\)", ins)
            if m and labels.get(m.group(1), i + 1) <= i:
                body = instrs[labels[m.group(1)]:i + 1]
                h = sum("HMMA" in x or "HGMMA" in x for x in body)
                if h:
                    found.append((len(body), h))
        loops[name] = sorted(found)

    for line in sass.splitlines():
        m = re.match(r"\.text\.(\w+):", line)
        if m:
            close()
            name, instrs, labels = m.group(1), [], {}
            continue
        m = re.match(r"\s*(\.L_x_\d+):", line)
        if m:
            labels[m.group(1)] = len(instrs)
            continue
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(.*?);", line)
        if m and name:
            instrs.append(m.group(1))
    close()
    return loops


def print_k_loops(sass):
    loops = k_loops(sass)
    bases = sorted({k[:-3] for k in loops if k.endswith("_rt") and loops[k]})
    print(f"\n{'family':<22} {'RT K loop':>10} {'BE K loop':>10} {'HMMA':>5}   (static SASS instructions)")
    for b in bases:
        r, e = loops.get(b + "_rt") or [(0, 0)], loops.get(b + "_be") or [(0, 0)]
        print(f"{b:<22} {r[0][0]:>10} {e[0][0]:>10} {r[0][1]:>5}")


if __name__ == "__main__":
    main()
