#!/usr/bin/python3
"""Differential check of berth's seccomp compiler against libseccomp.

    cargo run -p berth-seccomp --example export_bpf -- /tmp/p [profile.json]
    /usr/bin/python3 check/diff_libseccomp.py /tmp/p

Builds the same profile with libseccomp's Python bindings (Debian python3-seccomp)
the way runc does (skip rules equal to the default, one rule per condition when an
argument index repeats, unknown names ignored), runs both programs in a small
classic-BPF interpreter over x86_64, x32 and x86 syscall numbers 0..559 with a set
of argument vectors, and prints every class of disagreement. Expected ones:
runc's ENOSYS stub (berth has it built in; raw libseccomp returns the default),
the bad-arch action (berth KILL_PROCESS, libseccomp KILL_THREAD), and rules on
*different* arguments that both match (berth: precedence, the stricter action wins;
libseccomp: whichever its argument tree reaches first).
"""
import ctypes
import itertools
import json
import os
import struct
import sys
import time

import seccomp as S


def load_bpf(path):
    data = open(path, "rb").read()
    return [struct.unpack("<HBBI", data[i:i + 8]) for i in range(0, len(data), 8)]


def run(prog, d):
    """Return (action, instructions executed)."""
    pc, a, x, steps = 0, 0, 0, 0
    mem = [0] * 16
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        steps += 1
        if code == 0x20:
            a = struct.unpack_from("<I", d, k)[0]
        elif code == 0x00:
            a = k
        elif code == 0x01:
            x = k
        elif code == 0x02:
            mem[k] = a
        elif code == 0x60:
            a = mem[k]
        elif code == 0x54:
            a &= k
        elif code == 0x07:
            x = a
        elif code == 0x87:
            a = x
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):
            ok = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: a & k != 0}[code]
            pc += jt if ok else jf
        elif code == 0x06:
            return k, steps
        else:
            raise ValueError("opcode %#x" % code)


ACTIONS = {"SCMP_ACT_ALLOW": S.ALLOW, "SCMP_ACT_KILL": S.KILL, "SCMP_ACT_KILL_THREAD": S.KILL,
           "SCMP_ACT_KILL_PROCESS": S.KILL_PROCESS, "SCMP_ACT_TRAP": S.TRAP,
           "SCMP_ACT_LOG": S.LOG, "SCMP_ACT_NOTIFY": S.NOTIFY}
OPS = {"SCMP_CMP_NE": S.NE, "SCMP_CMP_LT": S.LT, "SCMP_CMP_LE": S.LE, "SCMP_CMP_EQ": S.EQ,
       "SCMP_CMP_GE": S.GE, "SCMP_CMP_GT": S.GT, "SCMP_CMP_MASKED_EQ": S.MASKED_EQ}
ARCHES = {"SCMP_ARCH_X86": S.Arch.X86, "SCMP_ARCH_X32": S.Arch.X32}


def action(name, errno):
    if name in ACTIONS:
        return ACTIONS[name]
    ret = 1 if errno is None else errno
    return S.ERRNO(ret) if name == "SCMP_ACT_ERRNO" else S.TRACE(ret)


def build_libseccomp(p, out):
    default = action(p["defaultAction"], p.get("defaultErrnoRet"))
    f = S.SyscallFilter(defaction=default)
    for arch in p.get("architectures") or []:
        if arch in ARCHES:
            f.add_arch(ARCHES[arch])
    for sc in p.get("syscalls") or []:
        act = action(sc["action"], sc.get("errnoRet"))
        if act == default:
            continue
        args = sc.get("args") or []
        conds = [S.Arg(c["index"], OPS[c["op"]], c["value"], c.get("valueTwo") or 0) for c in args]
        repeated = len({c["index"] for c in args}) != len(args)
        for name in sc["names"]:
            try:
                if repeated:
                    for c in conds:
                        f.add_rule(act, name, c)
                else:
                    f.add_rule(act, name, *conds)
            except (RuntimeError, ValueError):
                pass
    with open(out, "wb") as fh:
        f.export_bpf(fh)


ARGS = [[0] * 6, [40, 0, 0, 0, 0, 0], [2, 1, 0, 0, 0, 0], [8] + [0] * 5, [0xFFFFFFFF] + [0] * 5,
        [0x10000000] + [0] * 5, [0x3D0F00] + [0] * 5, [0x20008] + [0] * 5,
        [1, 0x10000000] + [0] * 4, [0x1_00000008] + [0] * 5, [5] * 6, [0x1_00000005] * 6,
        [0xFF] * 6, [0x1_000000FF] * 6, [4] * 6, [6] * 6, [0x8000000000000000] * 6,
        [3, 9, 0, 0, 0, 0], [4, 9, 0, 0, 0, 0], [4, 10, 0, 0, 0, 0], [7] * 6, [2**64 - 1] * 6]
ABIS = [(0xC000003E, 0, "x86_64"), (0xC000003E, 0x40000000, "x32"), (0x40000003, 0, "x86")]


def time_install(path):
    """Seconds the kernel takes to accept the program at `path` (in a child)."""
    data = open(path, "rb").read()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        buf = ctypes.create_string_buffer(data, len(data))

        class Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        prog = Fprog(len(data) // 8, ctypes.cast(buf, ctypes.c_void_p))
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        start = time.perf_counter()
        rc = libc.syscall(317, 1, 0, ctypes.byref(prog))  # seccomp(SET_MODE_FILTER)
        took = time.perf_counter() - start
        os.write(w, b"%f %d" % (took, rc))
        os._exit(0)
    os.waitpid(pid, 0)
    took, rc = os.read(r, 64).split()
    os.close(r)
    os.close(w)
    return float(took) if int(rc) == 0 else float("nan")


def main():
    base = sys.argv[1]
    build_libseccomp(json.load(open(base + ".json")), base + ".libseccomp.bpf")
    ours, theirs = load_bpf(base + ".bpf"), load_bpf(base + ".libseccomp.bpf")
    print("program length: berth %d, libseccomp %d" % (len(ours), len(theirs)))
    diffs, steps = {}, {"berth": [], "libseccomp": []}
    for (audit, bit, abi), nr, args in itertools.product(ABIS, range(560), ARGS):
        d = struct.pack("<IIQ6Q", nr | bit, audit, 0, *args)
        (a, sa), (b, sb) = run(ours, d), run(theirs, d)
        if abi == "x86_64" and args == ARGS[0]:
            steps["berth"].append(sa)
            steps["libseccomp"].append(sb)
        if a != b:
            diffs.setdefault((abi, "%#x" % a, "%#x" % b), set()).add(nr)
    for who, s in steps.items():
        print("%s: x86_64 nr 0..559, instructions run: mean %.1f, max %d"
              % (who, sum(s) / len(s), max(s)))
    for (abi, a, b), nrs in sorted(diffs.items()):
        nrs = sorted(nrs)
        print("%s: berth %s, libseccomp %s for %d numbers, e.g. %s" % (abi, a, b, len(nrs), nrs[:8]))
    for who, path in (("berth", base + ".bpf"), ("libseccomp", base + ".libseccomp.bpf")):
        runs = sorted(time_install(path) for _ in range(5))
        print("%s: seccomp() load, median of 5: %.0f us" % (who, runs[2] * 1e6))
    bad = struct.pack("<IIQ6Q", 1, 0xC00000B7, 0, *([0] * 6))
    print("bad arch: berth %#x, libseccomp %#x" % (run(ours, bad)[0], run(theirs, bad)[0]))


main()
