"""A pre-fork server for the fault matrix: traced in its master, forking short-lived workers (as uWSGI does).

Driven line by line on stdin, one JSON answer a line on stdout:
``work N wait|nowait`` (N calls in the master, then wait until delivered or not),
``fork COUNT CALLS AT_ONCE`` (workers in waves; per worker, how long its exit
flush and its whole exit took), ``relay`` (the tree's relay pid), ``relays``
(the relay pid files). TEST_EXIT is the workers' exit budget; TEST_LOG_LEVEL the
coldmod_trace logger's level (WARNING unless given). Used by
tests/test_tracer_faults.py and by tests-integration/test_redis_faults.py, each
as an application's ``server.py``.
"""

import atexit
import json
import logging
import os
import sys
import time

import coldmod_trace
from coldmod_trace import tracer

WORKER = {}


def flushed():
    # Registered before the tracer's exit hook, so run after it: the flush is over.
    if WORKER:
        os.write(WORKER["pipe"], f"{os.getpid()} {WORKER['began']} {time.time()}\n".encode())


atexit.register(flushed)
logging.basicConfig(format="%(process)d %(message)s")  # who said what: each process says a thing once
logging.getLogger("coldmod_trace").setLevel(os.environ.get("TEST_LOG_LEVEL", "WARNING"))
coldmod_trace.start(mode="exact", flush_interval=0.05, exit_timeout=float(os.environ["TEST_EXIT"]))


def in_master():
    pass


def in_worker():
    pass


def delivered(after):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = tracer.status()
        if not status["pending"] and not status["inflight"] and status["sequence"] > after:
            return True
        time.sleep(0.02)
    return False


def relay_pid():
    directory = os.environ["COLDMOD_RELAY_DIR"]
    [name] = [n for n in os.listdir(directory) if n.endswith(".pid")]
    with open(os.path.join(directory, name)) as pid_file:
        return int(pid_file.read())


def fork_workers(count, calls, at_once):
    # Workers in waves of at_once: a hundred interpreters tearing down together on two busy cores
    # would measure the machine, not us.
    read_end, write_end = os.pipe()
    reaped = {}
    workers = set()

    def reap():
        while True:
            pid, _ = os.wait()
            if pid in workers:  # not the tracer's own short-lived child that starts a relay
                reaped[pid] = time.time()
                return

    for _ in range(count):
        if len(workers) - len(reaped) == at_once:
            reap()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            for _ in range(calls):
                in_worker()
            WORKER.update(pipe=write_end, began=time.time())  # the exit begins
            sys.exit(0)  # atexit: the tracer's exit flush
        workers.add(pid)
    os.close(write_end)
    while len(reaped) < count:
        reap()
    seen = [line.split() for line in os.read(read_end, 1 << 20).decode().splitlines()]
    os.close(read_end)
    # per worker: how long the tracer's exit flush took, and how long the whole exit took
    return [(float(done) - float(began), reaped[int(pid)] - float(began)) for pid, began, done in seen]


for line in sys.stdin:
    command, *args = line.split()
    if command == "work":
        before = tracer.status()["sequence"]
        for _ in range(int(args[0])):
            in_master()
        answer = {"delivered": delivered(before) if args[1] == "wait" else None}
    elif command == "relay":
        answer = {"relay": relay_pid()}
    elif command == "fork":
        answer = {"exits": fork_workers(int(args[0]), int(args[1]), int(args[2]))}
    elif command == "relays":
        directory = os.environ["COLDMOD_RELAY_DIR"]
        answer = {"pids": sorted(n for n in os.listdir(directory) if n.endswith(".pid"))}
    print(json.dumps(answer), flush=True)
