"""Helpers the compat scripts share (stdlib only, /usr/bin/python3), next to laminar_harness.

    from compat_util import check, restart_wait, run_client, run_scenario
"""

import subprocess
import time
import traceback


def check(cond, what):
    """Fails the scenario with `what` unless cond holds."""
    if not cond:
        raise AssertionError(what)


def restart_wait(b, kill):
    """kill -9 or stop broker b, then start it again; waits for this run's own "started:" log
    line (the harness looks for any in the log, which an earlier run already wrote)."""
    n = b.log_text().count(" started:")
    if kill:
        b.kill9()
    else:
        check(b.stop() == 0, "broker exit status on stop")
    b.restart()
    deadline = time.monotonic() + 60
    while b.log_text().count(" started:") <= n:
        check(b.alive() and time.monotonic() < deadline, "broker did not restart")
        time.sleep(0.05)


def run_client(b, cmd, what, timeout, cwd=None, env=None, runtime_errors=False):
    """Runs a client check (cmd) against the running broker b, prints its output and stops b.
    Returns 0 when the client exited 0 and the broker stayed up and exited cleanly (and, with
    runtime_errors, logged no sanitizer "runtime error"); else prints why with the tail of the
    broker log and returns 1."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, cwd=cwd, env=env)
        out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode("utf-8", "replace") + "\nTIMEOUT", -1
    print(out)
    alive = b.alive()
    status = b.stop()
    log = b.log_text()
    if rc != 0 or not alive or status != 0 or (runtime_errors and "runtime error" in log):
        print("FAIL: %s rc=%s, broker alive=%s, broker exit=%s" % (what, rc, alive, status))
        print("---- broker log (tail) ----")
        print(log[-6000:])
        return 1
    return 0


def run_scenario(b, label, body, tail=3000, trace=True):
    """Starts broker b and runs body(); prints PASS label, or FAIL label with the exception
    (its traceback too with trace) and the last `tail` characters of the broker log. Cleans b up
    either way. Returns 0 or 1 (the script's exit status)."""
    try:
        b.start()
        body()
        print("PASS %s" % label)
        return 0
    except Exception as e:  # noqa: BLE001
        if trace:
            traceback.print_exc()
        print("FAIL %s: %s\nlog tail:\n%s" % (label, e, b.log_text()[-tail:]))
        return 1
    finally:
        b.cleanup()


def java_cmd(classpath, main_class, *args):
    """The command line of a Java suite: a quick-starting JVM with slf4j at warn."""
    return ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp", classpath, main_class] + list(args)
