"""The `imgcluster` script ends its process without tearing down the imported libraries: what a
command printed, wrote or registered to run at exit must still all happen, with its exit code.

Each test runs `imgcluster.cli.script` in a new Python process (as the installed script does), with
`main` swapped for a small stand-in, so no test pays for a clustering.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def run_script(body: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    """A new process that sets ``imgcluster.cli.main`` to the function ``body`` defines (``def
    command(): ...``) and runs ``imgcluster.cli.script()``; its output is piped back, unread until it ends."""
    code = "import imgcluster.cli as cli\n" + textwrap.dedent(body) + "\ncli.main = command\ncli.script()\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as for most users
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, timeout=120, env=env)


def test_all_output_reaches_a_pipe_before_the_process_ends(tmp_path: Path) -> None:
    # 100,000 short lines through a pipe (block-buffered): without a flush the last buffer is lost.
    done = run_script("""
        import sys
        def command():
            for i in range(100_000):
                print(i)
            sys.stderr.write("said on stderr")
    """, tmp_path)
    assert done.returncode == 0
    assert done.stdout.decode().split() == [str(i) for i in range(100_000)]
    assert done.stderr.endswith(b"said on stderr")


@pytest.mark.parametrize("raised, expected", [("None", 0), ("2", 2), ("130", 130)])
def test_the_exit_code_is_the_commands(tmp_path: Path, raised: str, expected: int) -> None:
    done = run_script(f"""
        def command():
            raise SystemExit({raised})
    """, tmp_path)
    assert done.returncode == expected


def test_exit_handlers_and_a_commands_own_thread_still_finish(tmp_path: Path) -> None:
    # A library's exit handler (logging, temporary folders, ray) runs; a non-daemon thread the
    # command left running finishes its work before the process ends.
    done = run_script("""
        import atexit, pathlib, threading, time
        def late_write():
            time.sleep(0.5)
            pathlib.Path("thread.txt").write_text("finished")
        def command():
            atexit.register(lambda: pathlib.Path("atexit.txt").write_text("ran"))
            threading.Thread(target=late_write).start()
    """, tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "thread.txt").read_text() == "finished"


def test_a_bug_still_shows_its_traceback(tmp_path: Path) -> None:
    done = run_script("""
        def command():
            raise RuntimeError("a bug in a command")
    """, tmp_path)
    assert done.returncode == 1 and b"Traceback" in done.stderr and b"a bug in a command" in done.stderr


def test_the_installed_script_and_python_m_run_the_fast_ending() -> None:
    # Both ways of running a command go through script(): the entry point in pyproject.toml and
    # `python -m imgcluster.cli`; a refusal through -m keeps its one line and exit code 2.
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'imgcluster = "imgcluster.cli:script"' in pyproject
    done = subprocess.run([sys.executable, "-m", "imgcluster.cli", "cluster", "/no/such/folder"],
                          capture_output=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.decode().strip().splitlines()) == 1
