#!/usr/bin/env python3
"""How long making a directory takes in each DIR given (median of 50 mkdirs, then the 50
rmdirs), to show what the filesystem under berth's --root and --runroot costs per file
made. On ext4 without a journal (this VM's disk) an inode freed in the last minute (six,
while its inode table block is dirty) is skipped by the allocator, which walks the group
from its start every time: right after a burst of container runs made and deleted files
in a block group, each new file there costs hundreds of microseconds instead of tens.
See docs/PERFORMANCE.md.

    bench/inode-alloc.py DIR...
"""
import os
import statistics
import sys
import time


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for d in sys.argv[1:]:
        made = []
        times = []
        try:
            for i in range(50):
                p = os.path.join(d, f".inode-alloc-{os.getpid()}-{i}")
                t = time.perf_counter()
                os.mkdir(p)
                times.append(time.perf_counter() - t)
                made.append(p)
        finally:
            for p in made:
                os.rmdir(p)
        print(f"{d}: mkdir median {statistics.median(times) * 1e6:.1f} us")


if __name__ == "__main__":
    main()
