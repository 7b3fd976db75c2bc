"""examples/dashboard/dashboard.py against a live ms-rendezvousd (issue 7, item 6).

Environment (set by tests/dashboard.cmake):
  MS_RENDEZVOUSD        the ms-rendezvousd binary
  MS_RENDEZVOUS_PROBE   the ms-rendezvous-probe binary
  MSR_DASHBOARD         <build>/examples/dashboard/dashboard.py (next to the generated stubs)
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

DAEMON = os.environ.get("MS_RENDEZVOUSD", "")
PROBE = os.environ.get("MS_RENDEZVOUS_PROBE", "")
DASHBOARD = os.environ.get("MSR_DASHBOARD", "")
JOB = "dash"


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class DashboardTest(unittest.TestCase):

    def setUp(self):
        for name, path in (("MS_RENDEZVOUSD", DAEMON), ("MS_RENDEZVOUS_PROBE", PROBE)):
            if not path or not os.access(path, os.X_OK):
                self.skipTest("%s does not name an executable" % name)
        if not DASHBOARD or not os.path.exists(DASHBOARD):
            self.skipTest("MSR_DASHBOARD does not name dashboard.py")
        self.tmp = tempfile.TemporaryDirectory(prefix="msr-dash-")
        self.addCleanup(self.tmp.cleanup)
        self.procs = []
        self.server = self._start_daemon([])

    def _start_daemon(self, extra_args):
        """Starts ms-rendezvousd on a free port; returns its HOST:PORT."""
        tag = str(len(self.procs)) + "-" + str(time.monotonic_ns())
        port_file = os.path.join(self.tmp.name, "port-" + tag)
        self.log = open(os.path.join(self.tmp.name, "daemon-%s.log" % tag), "wb")
        self.addCleanup(self.log.close)
        self.daemon = subprocess.Popen([DAEMON, "--listen", "127.0.0.1:0", "--port-file", port_file] + extra_args,
                                       stdout=self.log, stderr=subprocess.STDOUT)
        self.addCleanup(self._stop, self.daemon)
        deadline = time.monotonic() + 30
        while True:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    break
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                self.fail("ms-rendezvousd did not start; see " + self.log.name)
            time.sleep(0.02)
        return "127.0.0.1:%d" % self.port

    @staticmethod
    def _stop(p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def _probe(self, node_id):
        env = dict(os.environ, MS_SCHED_HOST="127.0.0.1", MS_SCHED_PORT=str(self.port), MS_JOB_ID=JOB,
                   MS_ROLE="MS_WORKER", MS_WORKER_NUM="4", MS_NODE_ID=str(node_id), MS_TOPO_TIMEOUT="120")
        log = open(os.path.join(self.tmp.name, "probe%d.log" % node_id), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen([PROBE, "--hold", "10"], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(self._stop, p)
        return p

    def _read(self, name):
        with open(os.path.join(self.tmp.name, name), errors="replace") as f:
            return f.read()

    def _dashboard(self, *args, timeout=30):
        return subprocess.run([sys.executable, "-B", DASHBOARD, "--server", self.server] + list(args),
                              capture_output=True, text=True, timeout=timeout)

    def _wait_joined(self, n):
        deadline = time.monotonic() + 30
        while True:
            r = self._dashboard("--once", "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            doc = json.loads(r.stdout)
            jobs = {j["job_id"]: j for j in doc["jobs"]}
            if JOB in jobs and jobs[JOB]["roles"] and jobs[JOB]["roles"][0]["joined"] >= n:
                return doc
            self.assertLess(time.monotonic(), deadline, "job %s never had %d members: %s" % (JOB, n, r.stdout))
            time.sleep(0.1)

    def test_forming_then_follow_to_complete(self):
        for i in range(3):
            self._probe(i)
        doc = self._wait_joined(3)
        job = {j["job_id"]: j for j in doc["jobs"]}[JOB]
        self.assertEqual(job["state"], "forming")
        self.assertEqual(job["roles"][0]["role"], "worker")
        self.assertEqual(job["roles"][0]["joined"], 3)
        self.assertEqual(job["roles"][0]["expected"], 4)
        self.assertEqual(job["roles"][0]["missing_ranks"], [3])

        # Text board with the members table.
        r = self._dashboard("--once", "--job", JOB)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("forming", r.stdout)
        self.assertIn("worker 3/4", r.stdout)
        self.assertIn("Members of %s (3)" % JOB, r.stdout)
        r = self._dashboard("--once", "--json", "--job", JOB)
        self.assertEqual(r.returncode, 0, r.stderr)
        members = json.loads(r.stdout)["members"]
        self.assertEqual(sorted(m["node_id"] for m in members), ["0", "1", "2"])
        self.assertTrue(all(m["state"] == "waiting" for m in members), members)

        # Follow the job; once the snapshot arrived, the 4th member completes it.
        out_path = os.path.join(self.tmp.name, "follow.out")
        with open(out_path, "wb") as out, open(os.path.join(self.tmp.name, "follow.err"), "wb") as err:
            follower = subprocess.Popen([sys.executable, "-B", DASHBOARD, "--server", self.server, "--job", JOB,
                                         "--follow", "--follow-seconds", "8", "--json"],
                                        stdout=out, stderr=err)
        self.addCleanup(self._stop, follower)
        deadline = time.monotonic() + 20
        while not self._read("follow.out").strip():
            self.assertIsNone(follower.poll(), "--follow ended early: " + self._read("follow.err"))
            self.assertLess(time.monotonic(), deadline, "no snapshot from --follow")
            time.sleep(0.05)
        self.assertEqual(json.loads(self._read("follow.out").splitlines()[0])["type"], "snapshot")
        self._probe(3)
        self.assertEqual(follower.wait(30), 0, self._read("follow.err"))
        rest = self._read("follow.out")
        events = [json.loads(line) for line in rest.splitlines() if line.strip()]
        types = [e["type"] for e in events]
        self.assertIn("job_complete", types, rest)
        complete = events[types.index("job_complete")]
        self.assertEqual(complete["job"]["state"], "complete")
        self.assertEqual(complete["job"]["roles"][0]["joined"], 4)

        # Text follow prints one line per event, starting with the snapshot.
        r = self._dashboard("--job", JOB, "--follow", "--follow-seconds", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("snapshot job=%s state=complete" % JOB, r.stdout)

    def test_protected_status_needs_the_admin_token(self):
        token_file = os.path.join(self.tmp.name, "admin-token")
        with open(token_file, "w") as f:
            f.write("dash-board-token\n")
        os.chmod(token_file, 0o600)
        server = self._start_daemon(["--admin-token-file", token_file, "--status-requires-token"])
        env = dict(os.environ)
        env.pop("MS_ADMIN_TOKEN", None)
        cmd = [sys.executable, "-B", DASHBOARD, "--server", server, "--once", "--json"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        env["MS_ADMIN_TOKEN"] = "dash-board-token"
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout.splitlines()[0])["jobs"], [])

    def test_unreachable_daemon(self):
        addr = "127.0.0.1:%d" % _free_port()
        r = subprocess.run([sys.executable, "-B", DASHBOARD, "--server", addr, "--once", "--timeout", "1"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(addr, r.stderr)
        self.assertEqual(r.stdout, "")


if __name__ == "__main__":
    unittest.main()
