"""Run the `reconcile` console script in this process; at exit, write its resource usage.

Usage: python bench/_rusage.py OUT.json RECONCILE_ARGS...

The script is run with runpy exactly as the console script would run it; OUT.json then gets
the exit status, this process's peak RSS (VmHWM of /proc/self/status) and CPU time, and
getrusage(RUSAGE_CHILDREN) of its waited-for children.

Why VmHWM and not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, and a process
started with vfork (as Python's subprocess does) inherits its parent's peak that way: RUSAGE_SELF
would report the harness's size, and RUSAGE_CHILDREN is floored by reconcile's own size at each
spawn. VmHWM belongs to the address space made by exec, so it is this program's alone (the
harness samples the children's VmHWM itself).
Only the standard library is imported before reconcile, so the startup cost is the console
script's.
"""

import json
import os
import resource
import runpy
import sys


def _vmhwm_kb() -> int:
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    del sys.path[0]  # bench/ itself: nothing in it may shadow what reconcile imports
    out = sys.argv[1]
    script = os.path.join(os.path.dirname(sys.executable), "reconcile")
    sys.argv = [script, *sys.argv[2:]]
    code: object = 1
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        status = code if isinstance(code, int) else (0 if code is None else 1)
        doc = {"exit": status,
               "self_maxrss_kb": _vmhwm_kb(), "self_ru_maxrss_kb": me.ru_maxrss,
               "children_maxrss_kb": kids.ru_maxrss,
               "self_cpu_s": me.ru_utime + me.ru_stime,
               "children_cpu_s": kids.ru_utime + kids.ru_stime}
        with open(out, "w") as handle:
            json.dump(doc, handle)
    sys.exit(status)


if __name__ == "__main__":
    main()
