"""bench/cpu.py: scheduler totals by process group between two snapshots. Pure: fake /proc trees."""

from __future__ import annotations

from pathlib import Path

from bench.cpu import CpuWindow, SchedTotals, group_of, machine_ticks, read_schedstat, snapshot


def _process(proc: Path, pid: int, cmdline: list[str], comm: str, threads: dict[int, str]) -> None:
    entry = proc / str(pid)
    (entry / "task").mkdir(parents=True)
    (entry / "cmdline").write_bytes(b"\0".join(word.encode() for word in cmdline) + b"\0")
    (entry / "comm").write_text(comm + "\n")
    for tid, line in threads.items():
        (entry / "task" / str(tid)).mkdir()
        (entry / "task" / str(tid) / "schedstat").write_text(line + "\n")


def test_a_schedstat_line_is_run_wait_and_slices():
    assert read_schedstat("232077914 22806415 925\n") == SchedTotals(232077914, 22806415, 925)


def test_processes_are_grouped_by_module_or_command_name():
    python = "/venv/bin/python"
    assert group_of(b"/venv/bin/python\0-m\0switch.cli.switchd\0run\0", "python") == "switchd"
    assert group_of(f"{python}\0-m\0simulators.loadgen\0--port\0".encode(), "python") == "loadgen"
    assert group_of(f"{python}\0-m\0simulators.netsim.cli\0".encode(), "python") == "netsim"
    assert group_of(f"{python}\0-m\0bench.echo_server\0".encode(), "python") == "echo"
    assert group_of(b"postgres: postgres postgres [local] idle\0", "postgres") == "postgres"
    # A word that only contains a module name is not that module (a path, an argument).
    assert group_of(f"{python}\0/tmp/switch.cli.switchd.log\0".encode(), "python") == "other"


def test_a_window_sums_threads_and_counts_new_processes_whole(tmp_path: Path):
    """If a process has two threads, then both count; one that started in the window counts whole; one
    that ended in it is left out; a reused pid of another group is not subtracted from."""
    before_dir, after_dir = tmp_path / "before", tmp_path / "after"
    switchd = ["python", "-m", "switch.cli.switchd", "run"]
    _process(before_dir, 10, switchd, "python", {10: "1000 100 10", 11: "500 50 5"})
    _process(before_dir, 20, ["postgres"], "postgres", {20: "700 70 7"})  # ends in the window
    _process(before_dir, 40, ["python", "-m", "bench.echo_server"], "python", {40: "9000 0 1"})
    _process(after_dir, 10, switchd, "python", {10: "4000 400 40", 11: "1500 150 15"})
    _process(after_dir, 30, ["python", "-m", "simulators.loadgen"], "python", {30: "2000 20 2"})
    _process(after_dir, 40, ["postgres"], "postgres", {40: "300 30 3"})  # pid 40 reused by postgres
    for directory in (before_dir, after_dir):
        (directory / "stat").write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (after_dir / "stat").write_text("cpu  200 0 100 900 50 0 0 0 0 0\n")
    window = CpuWindow.between(
        snapshot(before_dir),
        snapshot(after_dir),
        seconds=2.0,
        ticks_before=machine_ticks(before_dir),
        ticks_after=machine_ticks(after_dir),
    )
    assert window.by_group["switchd"] == SchedTotals(4000, 400, 40)
    assert window.by_group["loadgen"] == SchedTotals(2000, 20, 2)
    assert window.by_group["postgres"] == SchedTotals(300, 30, 3)
    assert window.by_group["echo"] == SchedTotals()
    assert window.busy_share == 150 / 250  # busy 150 -> 300 ticks of 1000 -> 1250
    line = window.describe(2, ["switchd", "postgres"])
    assert line.startswith(
        "CPU per transaction over 2.0 s, 2 answered (schedstat): switchd 2 us (waited 0 us"
    )
    assert "machine busy 60%" in line


def test_the_real_proc_has_this_process():
    import os

    group, totals = snapshot()[os.getpid()]
    assert group == "other" and totals.run_ns > 0
