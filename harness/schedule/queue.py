"""SLURM's view of the jobs: sacct, squeue and scontrol, each with a timeout.

`job_states` asks `sacct` for the states of job ids (array tasks expanded); where sacct is
absent, fails (no accounting) or times out, it asks `squeue --states=all`, and for ids
sacct does not know yet (a database lagging behind the controller) squeue fills in.
When both fail, the caller falls back to the result files. Every command runs in its
own process group with a timeout (`CMD_TIMEOUT_S`) and is killed with its children when
it runs over, so `status` and `sweep` never hang on a sick controller.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import signal
import subprocess

from harness.errors import UserError

CMD_TIMEOUT_S = 15.0            # every sacct/squeue/scontrol call
DEFAULT_MAX_ARRAY_SIZE = 1001   # SLURM's default, used when scontrol cannot tell
# SLURM job states, as the plan and status group them
ACTIVE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING",
                  "SUSPENDED", "STOPPED"}
ACTIVE_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
FAILED_STATES = {"FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "PREEMPTED"}


def _run(cmd: list[str], timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a SLURM client command; on timeout kill its whole process group, then raise."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def read_max_array_size(timeout: float = CMD_TIMEOUT_S) -> tuple[int, str]:
    """(MaxArraySize, where it came from) from `scontrol show config`."""
    try:
        out = _run(["scontrol", "show", "config"], timeout)
    except FileNotFoundError:
        raise UserError("scontrol not found: this machine is not a SLURM client; "
                        "use --executor local") from None
    except subprocess.TimeoutExpired:
        return DEFAULT_MAX_ARRAY_SIZE, f"scontrol timed out after {timeout:.0f} s; assumed"
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not m:
        msg = (out.stderr.strip().splitlines() or ["no MaxArraySize in its output"])[-1]
        return DEFAULT_MAX_ARRAY_SIZE, f"scontrol show config failed ({msg}); assumed"
    return int(m.group(1)), "scontrol show config"


def _expand_ids(job_id: str) -> list[str]:
    """'12_[1-3,5%2]' -> ['12_1', '12_2', '12_3', '12_5']; '12_4' -> ['12_4']; '12' -> ['12']."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    base, spec = m.group(1), m.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += [f"{base}_{i}" for i in range(int(a), int(b) + 1)]
        elif part:
            out.append(f"{base}_{part}")
    return out


def parse_sacct(text: str) -> dict[str, dict]:
    """`sacct -X -P -n -o JobID,State,ExitCode,Reason` lines -> {job id: {state, exit_code, reason}}."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        jid, state = parts[0], parts[1].split()[0] if parts[1].split() else ""
        info = {"state": state, "exit_code": parts[2] if len(parts) > 2 else "",
                "reason": parts[3] if len(parts) > 3 and parts[3] not in ("None", "") else ""}
        for j in _expand_ids(jid):
            out[j] = info     # later lines (the most recent attempt) win
    return out


def parse_squeue(text: str) -> dict[str, dict]:
    """`squeue -h -r -o %i|%T|%r` lines -> {job id: {state, reason}}."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        reason = parts[2] if len(parts) > 2 and parts[2] not in ("None", "") else ""
        for j in _expand_ids(parts[0]):
            out[j] = {"state": parts[1].split()[0] if parts[1].split() else "", "exit_code": "",
                      "reason": reason}
    return out


def job_states(job_ids: list[str], timeout: float = CMD_TIMEOUT_S) -> tuple[dict[str, dict], str, list[str]]:
    """States of SLURM job ids: (states, source, notes). Never raises, never hangs."""
    notes: list[str] = []
    if not job_ids:
        return {}, "none", notes
    bases = sorted({j.split("_")[0] for j in job_ids}, key=lambda b: (len(b), b))
    states: dict[str, dict] = {}
    try:
        for i in range(0, len(bases), 200):
            res = _run(["sacct", "-X", "--parsable2", "--noheader", "-o", "JobID,State,ExitCode,Reason",
                        "-j", ",".join(bases[i:i + 200])], timeout)
            if res.returncode != 0:
                raise RuntimeError((res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1])
            states.update(parse_sacct(res.stdout))
    except FileNotFoundError:
        notes.append("sacct not found")
    except subprocess.TimeoutExpired:
        notes.append(f"sacct timed out after {timeout:.0f} s")
    except RuntimeError as exc:
        notes.append(f"sacct failed: {exc}")
    else:
        missing = [j for j in job_ids if j not in states]
        if not missing:
            return states, "sacct", notes
        # e.g. a database lagging behind the controller: ask squeue about the rest
        sq, _, sq_notes = _squeue_states(bases, timeout)
        for j in missing:
            if j in sq:
                states[j] = sq[j]
        return states, "sacct+squeue", notes + sq_notes
    states, source, sq_notes = _squeue_states(bases, timeout)
    return states, source, notes + sq_notes


def _squeue_states(bases: list[str], timeout: float) -> tuple[dict[str, dict], str, list[str]]:
    fmt = "%i|%T|%r"
    try:
        user = getpass.getuser()
        res = _run(["squeue", "--states=all", "-h", "-r", "-u", user, "-o", fmt], timeout)
        if res.returncode != 0:
            msg = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
            return {}, "result files", [f"squeue failed: {msg}"]
    except FileNotFoundError:
        return {}, "result files", ["squeue not found"]
    except subprocess.TimeoutExpired:
        return {}, "result files", [f"squeue timed out after {timeout:.0f} s"]
    wanted = set(bases)
    states = {j: v for j, v in parse_squeue(res.stdout).items() if j.split("_")[0] in wanted}
    return states, "squeue", []
