"""CPU and memory readings from /proc: one process, a process group, the whole machine."""

import os
import platform
import re
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (after the command name, which may hold spaces)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_cpu(pid):
    """(user, system) CPU seconds of one process (utime, stime: fields 14 and 15)."""
    fields = _stat_fields(pid)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_mem_kb(pid):
    """VmRSS and VmHWM of one process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def group_cpu(pgid):
    """CPU seconds of every live process in a process group (an emulator and its children)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    return total


def system_cpu():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = ([*values, 0, 0, 0, 0, 0, 0, 0, 0])[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def listener_pgid(port):
    """Process group of whatever listens on 127.0.0.1:PORT (to count an emulator's CPU)."""
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                             check=False).stdout
        match = re.search(r"pid=(\d+)", out)
        return os.getpgid(int(match.group(1))) if match else None
    except OSError:
        return None


class Machine:
    """CPU of the emulators, of this script and of the machine, between two snapshots."""

    def __init__(self, emulators):
        self.emulators = emulators  # name -> pgid or None

    def snapshot(self):
        busy, total = system_cpu()
        times = os.times()
        return {
            "t": time.time(),
            "busy": busy,
            "total": total,
            "self": times.user + times.system,
            "load": loadavg(),
            "emulators": {name: (group_cpu(pgid) if pgid else None) for name, pgid in self.emulators.items()},
        }

    @staticmethod
    def delta(a, b, worker_cpu, messages):
        emu = {}
        emu_total = 0.0
        for name, start in a["emulators"].items():
            end = b["emulators"].get(name)
            used = None if start is None or end is None else max(0.0, end - start)
            emu[name] = {"cpu_s": None if used is None else round(used, 3),
                         "cpu_s_per_1000": None if used is None else round(used / messages * 1000, 4)}
            emu_total += used or 0.0
        busy = b["busy"] - a["busy"]
        wall = b["t"] - a["t"]
        bench = b["self"] - a["self"]
        others = max(0.0, busy - (worker_cpu or 0.0) - emu_total - bench)
        return {
            "wall_s": round(wall, 3),
            "machine_busy_cpu_s": round(busy, 3),
            "machine_busy_cores": round(busy / wall, 2) if wall > 0 else None,
            "emulators": emu,
            "bench_script_cpu_s": round(bench, 3),
            "other_processes_cpu_s": round(others, 3),
            "other_processes_cores": round(others / wall, 2) if wall > 0 else None,
            "load_average_start": a["load"],
            "load_average_end": b["load"],
        }


def machine_info():
    model = ""
    mem_kb = 0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_mb": mem_kb // 1024,
            "kernel": platform.release(), "load_average_at_start": loadavg()}


def binary_info(path):
    path = Path(path)
    size = path.stat().st_size
    info = {"path": str(path), "bytes": size, "mb": round(size / 1e6, 2)}
    try:
        out = subprocess.run(["file", "-b", str(path)], capture_output=True, text=True, check=False).stdout
        info["stripped"] = "not stripped" not in out and "stripped" in out
        info["file"] = out.strip()
    except OSError:
        pass
    return info
