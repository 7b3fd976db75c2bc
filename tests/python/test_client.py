"""ms_rendezvous Python bindings against a real ms-rendezvousd.

Run: MSR_DAEMON=build/bin/ms-rendezvousd PYTHONPATH=build/python /usr/bin/python3 -B \
     tests/python/test_client.py -v
(ctest -R python_client registers exactly this, see tests/python.cmake.)
"""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import uuid

import ms_rendezvous as msr

DAEMON = os.environ.get("MSR_DAEMON", "")

# Variables of the launcher environment that would change what from_env()/init() detect.
_CLEAN = {
    name: None
    for name in os.environ
    if name.startswith(("MS_", "OMPI_", "PMIX_")) or name in (
        "RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH", "RANK_ID", "RANK_SIZE", "DEVICE_ID")
}


class DaemonTestCase(unittest.TestCase):
    """Starts one ms-rendezvousd on 127.0.0.1:0 for the class; every test uses its own job."""

    @classmethod
    def setUpClass(cls):
        if not DAEMON or not os.access(DAEMON, os.X_OK):
            raise unittest.SkipTest("MSR_DAEMON does not name the ms-rendezvousd binary")
        cls._tmp = tempfile.TemporaryDirectory(prefix="msr-py-")
        port_file = os.path.join(cls._tmp.name, "port")
        cls._log = open(os.path.join(cls._tmp.name, "daemon.log"), "wb")
        cls._daemon = subprocess.Popen(
            [DAEMON, "--listen", "127.0.0.1:0", "--port-file", port_file,
             "--disconnect-grace", "500ms"],
            stdout=cls._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    cls.port = int(text)
                    break
            if cls._daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ms-rendezvousd did not start; see " + cls._log.name)
            time.sleep(0.02)

    @classmethod
    def tearDownClass(cls):
        cls._daemon.terminate()
        try:
            cls._daemon.wait(10)
        except subprocess.TimeoutExpired:
            cls._daemon.kill()
            cls._daemon.wait()
        cls._log.close()
        cls._tmp.cleanup()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def env(self, job, n, node_id, **extra):
        e = dict(_CLEAN)
        e.update({
            "MS_ROLE": "MS_WORKER",
            "MS_SCHED_HOST": "127.0.0.1",
            "MS_SCHED_PORT": str(self.port),
            "MS_WORKER_NUM": str(n),
            "MS_NODE_ID": str(node_id),
            "MS_JOB_ID": job,
            "MS_TOPO_TIMEOUT": "30",
        })
        e.update(extra)
        return e

    def new_job(self):
        return "py-" + uuid.uuid4().hex[:12]

    def join_all(self, n, callbacks=None, **extra):
        """n clients (node ids "0".."n-1", which pin the ranks) joined concurrently."""
        job = self.new_job()
        clients = [msr.Client.from_env(self.env(job, n, i, **extra)) for i in range(n)]
        self.clients.extend(clients)
        for i, c in enumerate(clients):
            if callbacks and callbacks[i]:
                c.set_event_callback(callbacks[i])
        topos = [None] * n
        errors = []

        def run(i):
            try:
                topos[i] = clients[i].join()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        return job, clients, topos


class JoinTest(DaemonTestCase):
    def test_join_assigns_ranks(self):
        job, clients, topos = self.join_all(3)
        for i, t in enumerate(topos):
            self.assertIsInstance(t, msr.Topology)
            self.assertEqual(t.rank, i)
            self.assertEqual(t.world_size, 3)
            self.assertEqual(t.role, "MS_WORKER")
            self.assertEqual(t.job_id, job)
            self.assertEqual(t.node_id, str(i))
            self.assertEqual(t.local_world_size, 3)
            self.assertEqual(t.num_nodes, 1)
            self.assertGreater(t.incarnation, 0)
            self.assertEqual(t.as_dict()["rank"], i)
            self.assertIn("rank=%d" % i, repr(t))
        members = clients[0].members()
        self.assertEqual(sorted((m["node_id"], m["rank"]) for m in members),
                         [("0", 0), ("1", 1), ("2", 2)])
        self.assertTrue(all(m["role"] == "MS_WORKER" for m in members))
        for c in clients:
            c.leave()
            c.leave()  # idempotent
        self.assertIsNone(clients[0].session_status())

    def test_closed_client_raises(self):
        c = msr.Client.from_env(self.env(self.new_job(), 1, 0))
        c.close()
        with self.assertRaises(msr.FailedPreconditionError):
            c.kv_num_keys()

    def test_not_joined(self):
        c = msr.Client.from_env(self.env(self.new_job(), 1, 0))
        self.clients.append(c)
        with self.assertRaises(msr.FailedPreconditionError) as cm:
            c.kv_set("k", "v")
        self.assertEqual(cm.exception.code, "FAILED_PRECONDITION")


class KvTest(DaemonTestCase):
    def test_round_trips(self):
        _, (a, b), _ = self.join_all(2)
        binary = b"\x00a\x00b\xff\x00"
        a.kv_set(b"bin\x00key", binary)
        self.assertEqual(b.kv_get(b"bin\x00key", timeout=5), binary)
        self.assertEqual(b.kv_try_get(b"bin\x00key"), binary)
        a.kv_set("text", "h\u00e9llo")
        self.assertEqual(b.kv_get("text"), "h\u00e9llo".encode())
        a.kv_set("ba", bytearray(b"xy"))
        self.assertEqual(b.kv_try_get("ba"), b"xy")

        with self.assertRaises(msr.NotFoundError) as cm:
            b.kv_try_get("nope")
        self.assertIsInstance(cm.exception, LookupError)
        self.assertEqual(cm.exception.code, "NOT_FOUND")

        self.assertEqual(a.kv_add("ctr", 5), 5)
        self.assertEqual(b.kv_add("ctr", -2), 3)
        self.assertEqual(a.kv_compare_set("cas", b"", b"first"), (b"first", True))
        self.assertEqual(b.kv_compare_set("cas", b"wrong", b"x"), (b"first", False))
        self.assertEqual(b.kv_compare_set("cas", b"first", b"second"), (b"second", True))
        a.kv_wait(["ctr", b"cas"], timeout=1)
        self.assertEqual(a.kv_list("c"), [(b"cas", b"second"), (b"ctr", b"3")])
        n = a.kv_num_keys()
        self.assertEqual(n, 5)
        self.assertTrue(a.kv_delete("cas"))
        self.assertFalse(a.kv_delete("cas"))
        self.assertEqual(b.kv_num_keys(), n - 1)
        self.assertEqual(len(b.kv_list()), n - 1)
        with self.assertRaises(TypeError):
            a.kv_set(1, b"x")
        with self.assertRaises(TypeError):
            a.kv_wait(b"single-key")

    def test_blocking_get_released_by_other_client(self):
        _, (a, b), _ = self.join_all(2)
        result = {}

        def getter():
            t0 = time.monotonic()
            result["value"] = a.kv_get("later", timeout=20)
            result["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=getter)
        t.start()
        time.sleep(0.3)
        self.assertTrue(t.is_alive())  # blocked, and the GIL is free: we run
        b.kv_set("later", b"\x00now")
        t.join(10)
        self.assertFalse(t.is_alive())
        self.assertEqual(result["value"], b"\x00now")
        self.assertGreaterEqual(result["elapsed"], 0.25)
        self.assertLess(result["elapsed"], 5)

    def test_timeout_raises_deadline_exceeded(self):
        _, (a,), _ = self.join_all(1)
        t0 = time.monotonic()
        with self.assertRaises(msr.DeadlineExceededError) as cm:
            a.kv_get("missing-key-42", timeout=0.3)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 5)
        e = cm.exception
        self.assertIsInstance(e, TimeoutError)
        self.assertIsInstance(e, msr.RendezvousError)
        self.assertEqual(e.code, "DEADLINE_EXCEEDED")
        self.assertIn("missing-key-42", e.message)
        self.assertEqual(str(e), e.message)
        with self.assertRaises(TimeoutError) as cm:
            a.kv_wait(["w1", "w2"], timeout=0.2)
        self.assertIn("w1", str(cm.exception))

    def test_exceptions_keep_code_and_message(self):
        with self.assertRaises(msr.InvalidArgumentError) as cm:
            msr.Client.from_env(self.env(self.new_job(), 1, 0, MS_SCHED_PORT="70000"))
        e = cm.exception
        self.assertIsInstance(e, ValueError)
        self.assertEqual(e.code, "INVALID_ARGUMENT")
        self.assertIn("MS_SCHED_PORT", e.message)
        self.assertIn("70000", e.message)
        self.assertIn("InvalidArgumentError(code='INVALID_ARGUMENT'", repr(e))

        _, (a,), _ = self.join_all(1)
        with self.assertRaises(msr.InvalidArgumentError) as cm:
            a.kv_get("k", timeout=-1)
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
        a.kv_set("notnum", "abc")
        with self.assertRaises(msr.FailedPreconditionError) as cm:
            a.kv_add("notnum", 1)
        self.assertIn("notnum", cm.exception.message)

    def test_unavailable_is_connection_error(self):
        env = self.env(self.new_job(), 1, 0, MS_SCHED_PORT="1", MS_TOPO_TIMEOUT="1")
        c = msr.Client.from_env(env)
        self.clients.append(c)
        with self.assertRaises(msr.RendezvousError) as cm:
            c.join()
        # Unreachable for the whole topology timeout: Unavailable (or the deadline, by timing).
        self.assertIn(cm.exception.code, ("UNAVAILABLE", "DEADLINE_EXCEEDED"))
        if cm.exception.code == "UNAVAILABLE":
            self.assertIsInstance(cm.exception, ConnectionError)

    def test_barrier_and_root_info(self):
        _, clients, _ = self.join_all(3)
        errors = []

        def arrive(c):
            try:
                c.barrier("b1", timeout=10)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=arrive, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertEqual(errors, [])
        # Only ranks 0 and 1 take part; rank 2 never arrives at b2.
        with self.assertRaises(msr.DeadlineExceededError):
            clients[0].barrier("b2", timeout=0.3, ranks=[0, 1])

        clients[0].publish_root_info("nccl_world_group", b"\x00root\x01")
        self.assertEqual(clients[2].fetch_root_info("nccl_world_group", timeout=5),
                         b"\x00root\x01")
        with self.assertRaises(msr.FailedPreconditionError):
            clients[1].publish_root_info("nccl_world_group", b"x")
        with self.assertRaises(msr.DeadlineExceededError):
            clients[1].fetch_root_info("other_group", timeout=0.2)


class JobTokenTest(DaemonTestCase):
    def test_token_from_env_admits_members_and_refuses_others(self):
        job, clients, topos = self.join_all(2, MS_JOB_TOKEN="py-s3cret")
        self.assertEqual(sorted(t.rank for t in topos), [0, 1])
        clients[0].kv_set(b"k", b"v")
        self.assertEqual(clients[1].kv_get(b"k"), b"v")
        # Same job id, wrong token: refused at once with the exception of its code.
        for token in ("wrong", None):
            extra = {"MS_JOB_TOKEN": token} if token else {}
            intruder = msr.Client.from_env(self.env(job, 3, 2, **extra))
            self.clients.append(intruder)
            with self.assertRaises(msr.PermissionDeniedError) as cm:
                intruder.join()
            self.assertEqual(cm.exception.code, "PERMISSION_DENIED")
            self.assertIn("MS_JOB_TOKEN", str(cm.exception))
            self.assertNotIn("py-s3cret", str(cm.exception))


class FailureTest(DaemonTestCase):
    def test_report_error_aborts_blocked_get_and_calls_back(self):
        events = []
        got_event = threading.Event()

        def on_event(ev):
            events.append(ev)
            got_event.set()

        def bad_callback(ev):
            raise RuntimeError("callback failure is printed, not propagated")

        _, (a, b, c), _ = self.join_all(3, callbacks=[on_event, None, bad_callback])
        result = {}

        def getter():
            try:
                a.kv_get("never-set")
            except Exception as e:  # noqa: BLE001
                result["error"] = e
                result["at"] = time.monotonic()

        t = threading.Thread(target=getter)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        b.report_error("boom: NCCL timeout")
        t.join(5)
        self.assertFalse(t.is_alive())
        e = result["error"]
        self.assertIsInstance(e, msr.AbortedError)
        self.assertEqual(e.code, "ABORTED")
        self.assertLess(result["at"] - t0, 1.0)
        self.assertIn("boom: NCCL timeout", e.message)
        self.assertIn("rank 1", e.message)

        self.assertTrue(got_event.wait(5))
        ev = events[0]
        self.assertEqual(ev["type"], "job_failed")
        self.assertEqual(ev["status_code"], "ABORTED")
        self.assertEqual(len(ev["dead"]), 1)
        dead = ev["dead"][0]
        self.assertEqual(dead["rank"], 1)
        self.assertEqual(dead["node_id"], "1")
        self.assertIn("boom", dead["reason"])
        self.assertIsInstance(dead["last_seen_s_ago"], float)
        self.assertIn("host", dead)

        with self.assertRaises(msr.AbortedError):
            a.session_status()
        with self.assertRaises(msr.AbortedError):
            c.session_status()  # its callback raised, the session still reports the failure
        with self.assertRaises(msr.AbortedError):
            a.kv_try_get("x")


_CTRL_C_CHILD = textwrap.dedent("""
    import sys, time
    import ms_rendezvous as msr
    c = msr.Client.from_env()
    c.join()
    print("ready", flush=True)
    c.kv_get("never-set")
    print("kv_get returned", flush=True)
""")


class CtrlCTest(DaemonTestCase):
    def test_sigint_interrupts_blocked_get(self):
        env = dict(os.environ)
        for k in _CLEAN:
            env.pop(k, None)
        env.update({k: v for k, v in self.env(self.new_job(), 1, 0).items() if v is not None})
        p = subprocess.Popen([sys.executable, "-B", "-c", _CTRL_C_CHILD], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = p.stdout.readline()
            self.assertEqual(line.strip(), b"ready", p.stderr.read() if not line else b"")
            time.sleep(0.3)
            self.assertIsNone(p.poll())
            t0 = time.monotonic()
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
            elapsed = time.monotonic() - t0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertLess(elapsed, 2.0)
        self.assertIn(b"KeyboardInterrupt", err)
        self.assertNotIn(b"kv_get returned", out)
        # An uncaught KeyboardInterrupt ends Python by SIGINT.
        self.assertIn(p.returncode, (-signal.SIGINT, 128 + signal.SIGINT, 1))


class InitTest(DaemonTestCase):
    def test_init_openmpi_without_daemon(self):
        env = dict(_CLEAN)
        env.update({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
                    "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
                    "MS_WORKER_IP": "10.0.0.7"})
        r = msr.init(env)
        self.assertIsInstance(r, msr.InitResult)
        self.assertEqual(r.method, "openmpi")
        self.assertIsNone(r.client)
        t = r.topology
        self.assertEqual((t.rank, t.world_size, t.local_rank, t.local_world_size),
                         (3, 4, 1, 2))
        self.assertEqual((t.node_rank, t.num_nodes), (1, 2))
        self.assertEqual(t.host, "10.0.0.7")
        self.assertEqual(t.role, "MS_WORKER")

    def test_init_openmpi_with_daemon(self):
        job = self.new_job()
        env = dict(_CLEAN)
        env.update({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1",
                    "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
                    "MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": str(self.port),
                    "MS_JOB_ID": job})
        r = msr.init(env)
        self.assertEqual(r.method, "openmpi")
        self.assertIsInstance(r.client, msr.Client)
        self.clients.append(r.client)
        self.assertEqual(r.topology.job_id, job)
        self.assertEqual((r.topology.rank, r.topology.world_size), (0, 1))
        self.assertGreater(r.topology.incarnation, 0)
        r.client.kv_set("k", "v")
        self.assertEqual(r.client.kv_get("k", 1), b"v")

    def test_init_without_any_method(self):
        with self.assertRaises(msr.InvalidArgumentError):
            msr.init(dict(_CLEAN))


if __name__ == "__main__":
    unittest.main()
