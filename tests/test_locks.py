"""Per-cell locks: exclusive among processes, stale locks of dead owners taken over."""

import json
import os
import subprocess
import sys
import textwrap
import time


from bench.locks import HOST, CellLocks, is_stale, process_start, read_holder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_lock(path, **fields):
    info = {"host": HOST, "pid": os.getpid(), "start": process_start(os.getpid()),
            "token": "t", "taken": time.time(), **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))


def test_acquire_is_exclusive_and_release_frees(tmp_path):
    a, b = CellLocks(tmp_path), CellLocks(tmp_path)
    assert a.try_acquire("c1") is None
    holder = b.try_acquire("c1")
    assert holder is not None and holder.pid == os.getpid() and holder.host == HOST
    assert "pid" in holder.describe()
    assert b.try_acquire("c2") is None  # other names are free
    a.release("c1")
    assert not a.path("c1").exists()
    assert b.try_acquire("c1") is None
    b.release_all()
    assert list(tmp_path.glob("*.lock")) == []


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    locks = CellLocks(tmp_path)
    _fake_lock(locks.path("c"), pid=_dead_pid(), start=None)
    assert is_stale(locks.path("c"), 600)
    assert locks.try_acquire("c") is None
    assert read_holder(locks.path("c")).pid == os.getpid()
    locks.release_all()


def test_reused_pid_is_stale_but_a_live_owner_is_not(tmp_path):
    live, reused = tmp_path / "live.lock", tmp_path / "reused.lock"
    _fake_lock(live)
    _fake_lock(reused, start="12345-not-my-start-time")
    assert not is_stale(live, 600)
    if process_start(os.getpid()) is not None:  # /proc available
        assert is_stale(reused, 600)


def test_other_host_is_stale_only_after_its_heartbeat_stops(tmp_path):
    path = tmp_path / "x.lock"
    _fake_lock(path, host="some-other-node", pid=1)
    assert not is_stale(path, stale_after_s=600)
    old = time.time() - 601
    os.utime(path, (old, old))
    assert is_stale(path, stale_after_s=600)
    locks = CellLocks(tmp_path, stale_after_s=600)
    assert locks.clean_stale() == 1 and not path.exists()


def test_unwritten_lock_is_stale_only_when_old(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text("")  # killed between creating and writing it
    assert not is_stale(path, 600)
    old = time.time() - 30
    os.utime(path, (old, old))
    assert is_stale(path, 600)


def test_release_never_removes_another_owners_lock(tmp_path):
    locks = CellLocks(tmp_path)
    assert locks.try_acquire("c") is None
    _fake_lock(locks.path("c"), token="someone-else")  # taken over meanwhile
    locks.release("c")
    assert locks.path("c").exists()


def test_heartbeat_keeps_the_lock_fresh(tmp_path):
    locks = CellLocks(tmp_path, heartbeat_s=0.05)
    assert locks.try_acquire("c") is None
    old = time.time() - 1000
    os.utime(locks.path("c"), (old, old))
    time.sleep(0.3)
    assert time.time() - locks.path("c").stat().st_mtime < 5
    locks.release_all()


def test_processes_racing_for_the_same_locks_get_each_exactly_once(tmp_path):
    """Four processes try to take the same 40 locks (and a stale one) at the same moment."""
    _fake_lock(tmp_path / "locks" / "n0.lock", pid=_dead_pid(), start=None)
    script = textwrap.dedent(f"""
        import sys, time
        from bench.locks import CellLocks
        locks = CellLocks({str(tmp_path / 'locks')!r})
        while time.time() < float(sys.argv[1]):
            time.sleep(0.001)
        got = [f"n{{i}}" for i in range(40) if locks.try_acquire(f"n{{i}}") is None]
        print(" ".join(got), flush=True)
        sys.stdin.read()  # hold the locks (stay alive) until every process has answered
        locks._stop.set()
    """)
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    got = [p.stdout.readline().split() for p in procs]
    for p in procs:
        p.communicate(timeout=60)
    assert all(p.returncode == 0 for p in procs)
    taken = sorted(n for g in got for n in g)
    assert taken == sorted(f"n{i}" for i in range(40)), got  # each exactly once, none lost
