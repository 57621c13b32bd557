"""Where the machine's CPU goes during a benchmark run, by process group, from the kernel's scheduler
statistics (Linux `/proc/<pid>/task/<tid>/schedstat`, no root needed).

Each thread's schedstat holds the time it ran (ns, exact: the scheduler's own clock, not ticks), the
time it was runnable and waited for a CPU (ns), and how many time slices it ran. Summed over a group's
threads between two snapshots and divided by the purchases answered in between, that is the group's CPU
per purchase and the time its threads queued for a CPU per purchase. The `/proc/<pid>/stat` figures
of earlier reports came from tick sampling (this VM's kernel accounts CPU time by ticks, 250 Hz), which
misjudges processes that wake often and briefly. `/proc/stat` gives the share of the machine that was
busy over the same window (tick-sampled, but over the whole machine, where that averages out).

Groups: switchd (every process of `switch.cli.switchd`), postgres, loadgen, netsim, the echo server,
and other (everything else on the machine, the benchmark's own process included): a busy "other" says
the machine was shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GROUPS", "CpuWindow", "SchedTotals", "group_of", "machine_ticks", "read_schedstat", "snapshot"]

GROUPS = ("switchd", "postgres", "loadgen", "netsim", "echo", "other")
_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class SchedTotals:
    """One group's scheduler totals: run time and run-queue wait in ns, time slices run."""

    run_ns: int = 0
    wait_ns: int = 0
    slices: int = 0

    def __add__(self, other: SchedTotals) -> SchedTotals:
        return SchedTotals(
            self.run_ns + other.run_ns, self.wait_ns + other.wait_ns, self.slices + other.slices
        )

    def __sub__(self, other: SchedTotals) -> SchedTotals:
        return SchedTotals(
            self.run_ns - other.run_ns, self.wait_ns - other.wait_ns, self.slices - other.slices
        )


def read_schedstat(text: str) -> SchedTotals:
    """One thread's `schedstat` line: "<run ns> <wait ns> <slices>"."""
    run_ns, wait_ns, slices = (int(part) for part in text.split()[:3])
    return SchedTotals(run_ns, wait_ns, slices)


def group_of(cmdline: bytes, comm: str) -> str:
    """The group of a process, from its NUL-separated command line and its command name."""
    if comm == "postgres":
        return "postgres"
    words = cmdline.split(b"\0")
    for module, group in (
        (b"switch.cli.switchd", "switchd"),
        (b"simulators.loadgen", "loadgen"),
        (b"simulators.netsim.cli", "netsim"),
        (b"bench.echo_server", "echo"),
    ):
        if module in words:
            return group
    return "other"


def _process_totals(pid_dir: Path) -> SchedTotals:
    total = SchedTotals()
    try:
        tasks = list((pid_dir / "task").iterdir())
    except OSError:
        return total
    for task in tasks:
        try:
            total += read_schedstat((task / "schedstat").read_text())
        except (OSError, ValueError):
            continue  # the thread ended in between
    return total


def snapshot(proc: Path = _PROC) -> dict[int, tuple[str, SchedTotals]]:
    """Every process now: pid -> (group, totals over its threads)."""
    found: dict[int, tuple[str, SchedTotals]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        found[int(entry.name)] = (group_of(cmdline, comm), _process_totals(entry))
    return found


def machine_ticks(proc: Path = _PROC) -> tuple[int, int]:
    """(busy, total) ticks of all CPUs since boot, from the first line of /proc/stat."""
    fields = [int(v) for v in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


@dataclass(frozen=True, slots=True)
class CpuWindow:
    """The difference between two snapshots, by group, and the machine's busy share over it."""

    seconds: float
    by_group: Mapping[str, SchedTotals]
    busy_share: float

    @staticmethod
    def between(
        before: Mapping[int, tuple[str, SchedTotals]],
        after: Mapping[int, tuple[str, SchedTotals]],
        *,
        seconds: float,
        ticks_before: tuple[int, int],
        ticks_after: tuple[int, int],
    ) -> CpuWindow:
        """A process seen only afterwards started in the window (all of it counts); one seen only before
        ended in it (its last part is lost: rare, and small next to a run's totals)."""
        groups = dict.fromkeys(GROUPS, SchedTotals())
        for pid, (group, totals) in after.items():
            earlier = before.get(pid)
            if earlier is not None and earlier[0] == group:
                totals = totals - earlier[1]
            groups[group] = groups[group] + totals
        busy = ticks_after[0] - ticks_before[0]
        total = ticks_after[1] - ticks_before[1]
        return CpuWindow(seconds, groups, busy / total if total > 0 else 0.0)

    def describe(self, transactions: int, groups: Iterable[str]) -> str:
        """One line: each group's CPU and run-queue wait per transaction, and the machine's busy share."""
        per = max(transactions, 1)
        parts = []
        for group in groups:
            totals = self.by_group[group]
            parts.append(
                f"{group} {totals.run_ns / per / 1000:.0f} us (waited {totals.wait_ns / per / 1000:.0f} us"
                f", {totals.slices / per:.2f} slices)"
            )
        return (
            f"CPU per transaction over {self.seconds:.1f} s, {transactions} answered (schedstat): "
            + ", ".join(parts)
            + f"; machine busy {self.busy_share:.0%} of {os.cpu_count()} CPUs"
        )
