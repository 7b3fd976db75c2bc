"""ms_rendezvous.torch against a real ms-rendezvousd and Debian's python3-torch (CPU, gloo).

Run with Debian's interpreter:
    MS_RENDEZVOUSD=build/bin/ms-rendezvousd PYTHONPATH=build/python \\
        /usr/bin/python3 -m unittest -v tests/python/test_torch.py
MS_RENDEZVOUSCTL (default: ms-rendezvousctl next to the daemon) lists the daemon's member table.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import uuid
from datetime import timedelta

import torch  # noqa: F401  (fail early when python3-torch is missing)

import ms_rendezvous as msr
import ms_rendezvous.torch as msr_torch

DAEMON = os.environ.get("MS_RENDEZVOUSD") or os.environ.get("MSR_DAEMON", "")
CTL = os.environ.get("MS_RENDEZVOUSCTL") or os.path.join(os.path.dirname(DAEMON),
                                                         "ms-rendezvousctl")
PROC_TIMEOUT = 45.0  # no subprocess of these tests may live longer

# One script for every worker process; the mode is argv[1]. Each prints JSON lines on stdout.
WORKER = textwrap.dedent(r"""
    import json, os, sys, time
    from datetime import timedelta

    def out(**kw):
        print(json.dumps(kw), flush=True)

    mode = sys.argv[1]
    import torch, torch.distributed as dist
    import ms_rendezvous as msr
    import ms_rendezvous.torch as msr_torch

    if mode == "allreduce":
        topo = msr_torch.init_process_group("gloo", timeout=timedelta(seconds=30))
        assert dist.get_rank() == topo.rank and dist.get_world_size() == topo.world_size
        t = torch.tensor([float(topo.rank + 1), 1.0])
        dist.all_reduce(t)
        out(rank=topo.rank, world_size=topo.world_size, node_id=os.environ["MS_NODE_ID"],
            generation=int(topo.generation), result=t.tolist())
        # leaves through atexit (destroy_process_group, then Client.leave)

    elif mode == "adder":
        c = msr.Client.from_env()
        topo = c.join()
        store = msr_torch.Store(c, prefix=sys.argv[2], timeout=timedelta(seconds=30))
        values = [store.add("counter", 1) for _ in range(100)]
        out(rank=topo.rank, last=values[-1], increasing=values == sorted(set(values)))
        store.add("done", 1)
        store.get("release")  # stay in the job until the test read the counter
        c.leave()

    elif mode == "setter":
        c = msr.Client.from_env()
        c.join()
        store = msr_torch.Store(c, prefix=sys.argv[2], timeout=timedelta(seconds=30))
        store.get("go")
        time.sleep(0.5)
        store.set("late", b"from-peer")
        out(set_at=time.time())
        store.get("release")
        c.leave()

    elif mode == "member":  # kill test: init, then block in store.get until the job fails
        topo = msr_torch.init_process_group("gloo", timeout=timedelta(seconds=60))
        out(ready=True, rank=topo.rank, node_id=os.environ["MS_NODE_ID"], pid=os.getpid())
        if os.environ["MS_NODE_ID"] == sys.argv[2]:
            time.sleep(120)  # the victim: SIGKILLed by the test
        store = msr_torch.get_store()
        t0 = time.time()
        try:
            store.get("never-set")
            out(error=None)
        except Exception as e:
            out(error=type(e).__name__, message=str(e), raised_at=time.time(),
                blocked_s=time.time() - t0,
                aborted=isinstance(e, msr.AbortedError) or "Aborted" in type(e).__name__)
        os._exit(0)  # the job failed: skip the atexit leave
    else:
        raise SystemExit("unknown mode " + mode)
""")


class Daemon:
    """A real ms-rendezvousd on 127.0.0.1, port 0 (--port-file)."""

    def __init__(self):
        if not DAEMON or not os.access(DAEMON, os.X_OK):
            raise unittest.SkipTest("MS_RENDEZVOUSD must name the ms-rendezvousd binary")
        self.dir = tempfile.TemporaryDirectory(prefix="msr-torch-test-")
        port_file = os.path.join(self.dir.name, "port")
        self.log = open(os.path.join(self.dir.name, "daemon.log"), "wb")
        self.proc = subprocess.Popen(
            [DAEMON, "--listen", "127.0.0.1:0", "--port-file", port_file,
             "--disconnect-grace", "300ms"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ms-rendezvousd exited with {self.proc.returncode}: "
                                   f"{self.log_text()}")
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("ms-rendezvousd did not write its port file within 15 s")

    def log_text(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def env(self, job_id, worker_num, node_id=None, **extra):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("MS_") and k not in ("MS_RENDEZVOUSD", "MS_RENDEZVOUSCTL"):
                del env[k]
        env.update(MS_ROLE="MS_WORKER", MS_SCHED_HOST="127.0.0.1", MS_SCHED_PORT=str(self.port),
                   MS_WORKER_NUM=str(worker_num), MS_JOB_ID=job_id, MS_TOPO_TIMEOUT="40")
        if node_id is not None:
            env["MS_NODE_ID"] = node_id
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def members(self, job_id):
        r = subprocess.run([CTL, "--server", f"127.0.0.1:{self.port}", "--json", "members",
                            job_id], capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"ms-rendezvousctl members failed: {r.stdout}{r.stderr}")
        return json.loads(r.stdout)["members"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()


class Worker:
    """A /usr/bin/python3 subprocess running WORKER; its JSON lines arrive on a queue."""

    def __init__(self, env, *args):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.lines = queue.Queue()
        self.started = time.time()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        with self.proc.stdout:
            for line in self.proc.stdout:
                line = line.strip()
                if line.startswith("{"):
                    self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, timeout=PROC_TIMEOUT):
        try:
            msg = self.lines.get(timeout=max(0.1, timeout))
        except queue.Empty:
            raise AssertionError(f"no output within {timeout:.0f} s; stderr:\n{self.kill()}")
        if msg is None:
            self.proc.wait(timeout=5)
            raise AssertionError(f"worker exited ({self.proc.returncode}) without output; "
                                 f"stderr:\n{self.kill()}")
        return msg

    def finish(self):
        try:
            rc = self.proc.wait(timeout=max(1.0, PROC_TIMEOUT - (time.time() - self.started)))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit; stderr:\n{self.kill()}")
        err = self.kill()
        if rc != 0:
            raise AssertionError(f"worker exited with {rc}; stderr:\n{err}")

    def kill(self):
        """Kills the worker when still running; returns the tail of its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.stderr.closed:
            return ""
        self.stderr.seek(0)
        err = self.stderr.read().decode(errors="replace")[-4000:]
        self.stderr.close()
        return err


def _job(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


class ProcessGroupTest(unittest.TestCase):
    """init_process_group("gloo") from 4 processes; a member killed mid-job."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def setUp(self):
        self.workers = []

    def tearDown(self):
        for w in self.workers:
            w.kill()

    def test_four_processes_all_reduce_with_daemon_ranks(self):
        job = _job("allreduce")
        self.workers = [Worker(self.daemon.env(job, 4, node_id=f"node-{i}"), "allreduce")
                        for i in range(4)]
        results = [w.next() for w in self.workers]
        for w in self.workers:
            w.finish()
        self.assertEqual(sorted(r["rank"] for r in results), [0, 1, 2, 3])
        for r in results:
            self.assertEqual(r["world_size"], 4)
            self.assertEqual(r["result"], [1.0 + 2 + 3 + 4, 4.0])
        members = self.daemon.members(job)
        table = {m["node_id"]: m["rank"] for m in members}
        self.assertEqual(table, {r["node_id"]: r["rank"] for r in results})
        # atexit left the job: every member is "left", none failed.
        self.assertEqual({m["state"] for m in members}, {"left"}, members)

    def test_killed_member_fails_pending_store_get_promptly(self):
        job = _job("kill")
        victim = "node-victim"
        names = ["node-a", "node-b", victim]
        self.workers = [Worker(self.daemon.env(job, 3, node_id=n), "member", victim)
                        for n in names]
        ready = [w.next() for w in self.workers]
        self.assertEqual(sorted(r["rank"] for r in ready), [0, 1, 2])
        victim_rank = next(r["rank"] for r in ready if r["node_id"] == victim)
        time.sleep(0.5)  # the survivors are now blocked in store.get("never-set")
        killed_at = time.time()
        self.workers[2].proc.send_signal(signal.SIGKILL)
        for w in self.workers[:2]:
            r = w.next(timeout=15)
            w.finish()
            self.assertIsNotNone(r["error"], r)
            self.assertTrue(r["aborted"], r)
            self.assertIn(victim, r["message"])
            self.assertIn(f"rank {victim_rank}", r["message"])
            # grace 300 ms + fan-out: well under torch's 60 s store timeout
            self.assertLess(r["raised_at"] - killed_at, 2.5, r)
            print(f"\n  survivor raised {r['error']} {r['raised_at'] - killed_at:.2f} s after the "
                  f"SIGKILL: {r['message']}", file=sys.stderr)


class StoreSemanticsTest(unittest.TestCase):
    """The Store against torch's documented contract. The test process is a member of a 2-member
    job whose other member ("setter") writes a key late."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.job = _job("store")
        cls.peer = Worker(cls.daemon.env(cls.job, 2, node_id="peer"), "setter", "peer/")
        try:
            cls.client = msr.Client.from_env(env=cls.daemon.env(cls.job, 2, node_id="tester"))
            cls.topo = cls.client.join()
        except BaseException:
            cls.peer.kill()
            cls.daemon.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            msr_torch.Store(cls.client, prefix="peer/").set("release", "1")
            cls.peer.finish()
            cls.client.leave()
        finally:
            cls.peer.kill()
            cls.daemon.stop()

    def store(self, timeout=timedelta(seconds=10)):
        return msr_torch.Store(self.client, prefix=f"{self._testMethodName}/", timeout=timeout)

    def test_is_a_torch_store_with_timeout_property(self):
        s = self.store()
        self.assertIsInstance(s, torch.distributed.Store)
        self.assertEqual(s.timeout, timedelta(seconds=10))
        s.set_timeout(timedelta(seconds=3))
        self.assertEqual(s.timeout, timedelta(seconds=3))
        self.assertEqual(msr_torch.Store(self.client).timeout, timedelta(seconds=300))

    def test_set_get_str_and_bytes(self):
        s = self.store()
        s.set("a", "text")
        s.set("b", b"\x00\xffbin")
        self.assertEqual(s.get("a"), b"text")
        self.assertEqual(s.get("b"), b"\x00\xffbin")
        s.set("a", "over")
        self.assertEqual(s.get("a"), b"over")

    def test_blocking_get_released_by_set_from_another_process(self):
        peer = msr_torch.Store(self.client, prefix="peer/", timeout=timedelta(seconds=20))
        t0 = time.time()
        peer.set("go", "1")
        self.assertEqual(peer.get("late"), b"from-peer")
        elapsed = time.time() - t0
        self.assertGreaterEqual(elapsed, 0.4)  # the peer sets it 0.5 s after "go"
        self.assertLess(elapsed, 15)
        msg = self.peer.next(timeout=10)
        self.assertLessEqual(msg["set_at"], time.time())

    def test_get_times_out_with_store_timeout_naming_key(self):
        s = self.store(timeout=timedelta(milliseconds=300))
        t0 = time.time()
        with self.assertRaises(RuntimeError) as cm:
            s.get("missing-key")
        elapsed = time.time() - t0
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertIn("missing-key", str(cm.exception))
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 5)

    def test_wait(self):
        s = self.store(timeout=timedelta(milliseconds=300))
        s.set("k1", "v")
        s.wait(["k1"])
        s.wait(["k1"], timedelta(seconds=1))
        t0 = time.time()
        with self.assertRaises(RuntimeError) as cm:
            s.wait(["k1", "k2"], timedelta(milliseconds=400))
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertIn("k2", str(cm.exception))
        self.assertGreaterEqual(time.time() - t0, 0.35)
        t0 = time.time()
        with self.assertRaises(RuntimeError):
            s.wait(["k3"])  # the store's timeout (300 ms)
        self.assertLess(time.time() - t0, 5)

    def test_add(self):
        s = self.store()
        self.assertEqual(s.add("n", 5), 5)
        self.assertEqual(s.add("n", -2), 3)
        self.assertEqual(s.add("n", 0), 3)
        self.assertEqual(s.get("n"), b"3")

    def test_compare_set(self):
        s = self.store()
        # missing key, empty expected: created
        self.assertEqual(s.compare_set("c", "", "first"), b"first")
        self.assertEqual(s.get("c"), b"first")
        # match: swapped, returns the new value
        self.assertEqual(s.compare_set("c", "first", "second"), b"second")
        self.assertEqual(s.get("c"), b"second")
        # mismatch: unchanged, returns the current value
        self.assertEqual(s.compare_set("c", "wrong", "third"), b"second")
        self.assertEqual(s.get("c"), b"second")
        # missing key, non-empty expected: not created, returns expected (TCPStore/HashStore)
        self.assertEqual(s.compare_set("nokey", "exp", "des"), b"exp")
        self.assertFalse(s.check(["nokey"]))
        # bytes
        self.assertEqual(s.compare_set("c", b"second", b"\x01"), b"\x01")

    def test_compare_set_through_torch_prefix_store(self):
        # C++ callers (PrefixStore, ProcessGroupGloo) reach the Python methods via torch's
        # trampoline, which hands compare_set lists of ints and calls deleteKey/getNumKeys.
        s = self.store()  # must outlive p: torch's trampoline reaches the methods through it
        p = torch.distributed.PrefixStore("pfx", s)
        p.set("x", "1")
        self.assertEqual(p.get("x"), b"1")
        self.assertEqual(p.compare_set("x", "1", "2"), b"2")
        self.assertEqual(p.add("y", 4), 4)
        p.wait(["x", "y"])
        p.wait(["x"], timedelta(seconds=1))
        self.assertTrue(p.delete_key("x"))
        self.assertGreaterEqual(p.num_keys(), 1)

    def test_check_delete_num_keys(self):
        s = self.store()
        before = s.num_keys()
        self.assertFalse(s.check(["d1"]))
        s.set("d1", "v")
        s.set("d2", "v")
        self.assertTrue(s.check(["d1"]))
        self.assertTrue(s.check(["d1", "d2"]))
        self.assertFalse(s.check(["d1", "d3"]))
        self.assertEqual(s.num_keys(), before + 2)
        self.assertTrue(s.delete_key("d1"))
        self.assertFalse(s.delete_key("d1"))
        self.assertFalse(s.check(["d1"]))
        self.assertEqual(s.num_keys(), before + 1)
        with self.assertRaises(RuntimeError):
            s.wait(["d1"], timedelta(milliseconds=200))

    def test_add_is_atomic_under_8_processes(self):
        job = _job("adders")
        prefix = "adders/"
        workers = [Worker(self.daemon.env(job, 9, node_id=f"adder-{i}"), "adder", prefix)
                   for i in range(8)]
        try:
            client = msr.Client.from_env(env=self.daemon.env(job, 9, node_id="reader"))
            client.join()
            s = msr_torch.Store(client, prefix=prefix, timeout=timedelta(seconds=40))
            results = [w.next() for w in workers]
            self.assertEqual(s.get("counter"), b"800")
            self.assertEqual(s.add("counter", 0), 800)
            self.assertEqual(max(r["last"] for r in results), 800)
            self.assertTrue(all(r["increasing"] for r in results), results)
            s.set("release", "1")
            for w in workers:
                w.finish()
            client.leave()
        finally:
            for w in workers:
                w.kill()


if __name__ == "__main__":
    unittest.main()
