#!/usr/bin/python3
"""A small status board for ms-rendezvousd over its ops API (RendezvousAdmin, gRPC).

Usage:
  dashboard.py --server HOST:PORT [--once] [--interval S] [--job ID] [--follow [--follow-seconds S]] [--json]

Without --follow it prints the jobs table (and, with --job, that job's members table) and redraws it
every --interval seconds until Ctrl-C; --once prints it once and exits. --follow streams the job's
events (RendezvousAdmin.WatchJob), one line per event, starting with a snapshot. --json prints
machine-readable output instead (one JSON document per refresh, one JSON object per event).

Needs Debian's python3-grpcio and the stubs generated from proto/ by python3-grpc-tools next to this
file (the CMake build does that into <build>/examples/dashboard). Exit status: 0 on success (and on
Ctrl-C), 1 when the daemon is unreachable or a call fails, 2 on usage errors.
"""

import argparse
import json
import os
import sys
import time

try:
    import grpc
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("dashboard: cannot import grpc: install python3-grpcio (Debian) and run with /usr/bin/python3")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from ms.rendezvous.v1 import rendezvous_pb2 as pb
    from ms.rendezvous.v1 import rendezvous_pb2_grpc as pb_grpc
except ImportError as e:  # pragma: no cover - depends on the build
    sys.exit("dashboard: cannot import the generated stubs (%s): build the project (cmake --build) and run "
             "<build>/examples/dashboard/dashboard.py, or generate them with: python3 -m grpc_tools.protoc "
             "-I proto --python_out=DIR --grpc_python_out=DIR proto/ms/rendezvous/v1/rendezvous.proto" % e)


class Unreachable(Exception):
    """The daemon could not be reached (connect timeout or UNAVAILABLE)."""


def _enum_name(enum, value, prefix):
    try:
        name = enum.Name(value)
    except ValueError:
        return str(value)
    return name[len(prefix):].lower() if name.startswith(prefix) else name.lower()


def job_state(v):
    return _enum_name(pb.JobState, v, "JOB_STATE_")


def member_state(v):
    return _enum_name(pb.MemberState, v, "MEMBER_STATE_")


def role_name(v):
    return _enum_name(pb.Role, v, "ROLE_")


def event_type(v):
    return _enum_name(pb.JobEventType, v, "JOB_EVENT_")


def job_to_dict(j):
    return {
        "job_id": j.job_id,
        "state": job_state(j.state),
        "generation": j.generation,
        "roles": [{
            "role": role_name(r.role),
            "joined": r.joined,
            "expected": r.expected,
            "missing_ranks": list(r.missing_ranks),
            "missing_ranks_truncated": r.missing_ranks_truncated,
            "waiting": r.waiting,
            "active": r.active,
            "left": r.left,
        } for r in j.roles],
        "suspect": j.suspect,
        "dead": j.dead,
        "age_s": round(j.age_s, 3),
        "topo_deadline_in_s": round(j.topo_deadline_in_s, 3),
        "failure_reason": j.failure_reason,
        "recovery_enabled": j.recovery_enabled,
        "hosts_total": j.hosts_total,
    }


def member_to_dict(m):
    return {
        "role": role_name(m.role),
        "rank": m.rank if m.has_rank else None,
        "node_id": m.node_id,
        "host": m.host,
        "host_name": m.host_name,
        "state": member_state(m.state),
        "connected": m.connected,
        "last_heartbeat_age_s": round(m.last_heartbeat_age_s, 3),
        "incarnation": m.incarnation,
        "reason": m.reason,
    }


def dead_to_dict(d):
    return {
        "role": role_name(d.role),
        "rank": d.rank if d.has_rank else None,
        "node_id": d.node_id,
        "host": d.host,
        "last_seen_s_ago": round(d.last_seen_s_ago, 3),
        "reason": d.reason,
    }


def event_to_dict(e):
    out = {
        "seq": e.seq,
        "type": event_type(e.type),
        "unix_time_ms": e.unix_time_ms,
        "message": e.message,
        "job": job_to_dict(e.job),
    }
    if e.HasField("member"):
        out["member"] = member_to_dict(e.member)
    if e.dead:
        out["dead"] = [dead_to_dict(d) for d in e.dead]
    return out


class Board:
    """Reads the ops API of one daemon."""

    def __init__(self, server, timeout, token=None, tls_ca=None):
        self.server = server
        self.timeout = timeout
        # A daemon started with --status-requires-token wants the admin token on every call.
        self.metadata = (("authorization", "Bearer " + token),) if token else None
        if tls_ca:
            with open(tls_ca, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            self.channel = grpc.secure_channel(server, creds)
        else:
            self.channel = grpc.insecure_channel(server)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise Unreachable("cannot reach ms-rendezvousd at %s (no connection within %gs)" % (server, timeout))
        self.stub = pb_grpc.RendezvousAdminStub(self.channel)

    def close(self):
        self.channel.close()

    def _call(self, fn, request):
        try:
            return fn(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unreachable("cannot reach ms-rendezvousd at %s (%s: %s)"
                                  % (self.server, e.code().name, e.details()))
            raise

    def jobs(self):
        jobs, token = [], ""
        while True:
            resp = self._call(self.stub.ListJobs, pb.ListJobsRequest(page_size=1000, page_token=token))
            jobs.extend(resp.jobs)
            token = resp.next_page_token
            if not token:
                return jobs

    def members(self, job_id):
        members, token = [], ""
        while True:
            resp = self._call(self.stub.ListMembers,
                              pb.ListMembersRequest(job_id=job_id, page_size=10000, page_token=token))
            members.extend(resp.members)
            token = resp.next_page_token
            if not token:
                return members

    def watch(self, job_id, seconds):
        """Yields the job's events; stops quietly after `seconds` (None: until the stream ends)."""
        stream = self.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=seconds,
                                    metadata=self.metadata)
        try:
            for event in stream:
                yield event
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and seconds is not None:
                return
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise Unreachable("lost ms-rendezvousd at %s (%s: %s)" % (self.server, e.code().name, e.details()))
            raise
        finally:
            stream.cancel()


def _table(headers, rows):
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _age(seconds):
    seconds = max(0.0, seconds)
    if seconds < 60:
        return "%.1fs" % seconds
    if seconds < 3600:
        return "%dm%02ds" % (seconds // 60, seconds % 60)
    return "%dh%02dm" % (seconds // 3600, (seconds % 3600) // 60)


def _missing(ranks, truncated):
    if not ranks:
        return "-"
    text = ",".join(str(r) for r in ranks[:16])
    if len(ranks) > 16 or truncated:
        text += ",..."
    return text


def render_jobs(jobs):
    rows = []
    for j in jobs:
        roles = " ".join("%s %d/%d" % (role_name(r.role), r.joined, r.expected) for r in j.roles) or "-"
        missing = " ".join("%s:%s" % (role_name(r.role), _missing(list(r.missing_ranks), r.missing_ranks_truncated))
                           for r in j.roles if r.missing_ranks) or "-"
        rows.append([j.job_id, job_state(j.state), str(j.generation), roles, missing,
                     str(j.suspect), str(j.dead), _age(j.age_s)])
    if not rows:
        return "(no jobs)"
    return _table(["JOB", "STATE", "GEN", "JOINED/EXPECTED", "MISSING", "SUSPECT", "DEAD", "AGE"], rows)


def render_members(job_id, members):
    rows = []
    for m in members:
        rows.append([role_name(m.role), str(m.rank) if m.has_rank else "-", m.node_id, m.host or "-",
                     member_state(m.state), "yes" if m.connected else "no", _age(m.last_heartbeat_age_s),
                     m.reason or ""])
    title = "Members of %s (%d)" % (job_id, len(members))
    if not rows:
        return title + "\n(no members)"
    return title + "\n" + _table(["ROLE", "RANK", "NODE", "HOST", "STATE", "CONNECTED", "LAST HB", "REASON"], rows)


def render_event(e):
    ts = time.strftime("%H:%M:%S", time.localtime(e.unix_time_ms / 1000.0)) if e.unix_time_ms else "--:--:--"
    parts = ["%s #%d %s job=%s state=%s gen=%d" % (ts, e.seq, event_type(e.type), e.job.job_id,
                                                   job_state(e.job.state), e.job.generation)]
    for r in e.job.roles:
        parts.append("%s=%d/%d" % (role_name(r.role), r.joined, r.expected))
    if e.HasField("member"):
        m = e.member
        parts.append("member=%s%s@%s(%s)" % (m.node_id, "/rank%d" % m.rank if m.has_rank else "",
                                            m.host or "?", member_state(m.state)))
    for d in e.dead:
        parts.append("dead=%s(%s)" % (d.node_id, d.reason))
    if e.message:
        parts.append("- " + e.message)
    return " ".join(parts)


def snapshot(board, job_id):
    """One refresh: (jobs, members or None)."""
    jobs = board.jobs()
    members = None
    if job_id is not None:
        try:
            members = board.members(job_id)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            members = []
    return jobs, members


def print_board(board, args):
    jobs, members = snapshot(board, args.job)
    if args.json:
        doc = {"server": args.server, "unix_time_ms": int(time.time() * 1000),
               "jobs": [job_to_dict(j) for j in jobs]}
        if members is not None:
            doc["job"] = args.job
            doc["members"] = [member_to_dict(m) for m in members]
        print(json.dumps(doc, sort_keys=True), flush=True)
        return
    text = ["ms-rendezvousd %s  %s" % (args.server, time.strftime("%Y-%m-%d %H:%M:%S")), "", render_jobs(jobs)]
    if members is not None:
        text += ["", render_members(args.job, members)]
    if not args.once and sys.stdout.isatty():
        sys.stdout.write("\033[H\033[2J")  # plain redraw: home + clear screen
    print("\n".join(text), flush=True)


def follow(board, args):
    for e in board.watch(args.job, args.follow_seconds):
        if args.json:
            print(json.dumps(event_to_dict(e), sort_keys=True), flush=True)
        else:
            print(render_event(e), flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Status board for ms-rendezvousd (ops API over gRPC).")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="daemon address, e.g. 127.0.0.1:8118")
    p.add_argument("--once", action="store_true", help="print the board once and exit")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="refresh period in seconds (default 2)")
    p.add_argument("--job", metavar="ID", help="also show this job's members (required by --follow)")
    p.add_argument("--follow", action="store_true", help="stream the job's events (WatchJob), one line each")
    p.add_argument("--follow-seconds", type=float, default=None, metavar="S",
                   help="with --follow: stop after S seconds (default: until the stream ends or Ctrl-C)")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON lines)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="connect and per-call timeout in seconds (default 5)")
    p.add_argument("--tls-ca", metavar="FILE", default=os.environ.get("MS_TLS_CA"),
                   help="PEM CA that verifies a TLS daemon (default $MS_TLS_CA; plaintext when unset)")
    args = p.parse_args(argv)
    # The admin token comes from the environment only, never the command line (ps shows it).
    args.token = os.environ.get("MS_ADMIN_TOKEN") or None
    if args.follow and not args.job:
        p.error("--follow needs --job ID")
    if args.interval <= 0:
        p.error("--interval must be > 0, got %g" % args.interval)
    if args.follow_seconds is not None and args.follow_seconds <= 0:
        p.error("--follow-seconds must be > 0, got %g" % args.follow_seconds)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        board = Board(args.server, args.timeout, token=args.token, tls_ca=args.tls_ca)
    except Unreachable as e:
        print("dashboard: %s" % e, file=sys.stderr)
        return 1
    try:
        if args.follow:
            follow(board, args)
        elif args.once:
            print_board(board, args)
        else:
            while True:
                print_board(board, args)
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    except Unreachable as e:
        print("dashboard: %s" % e, file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print("dashboard: %s: %s: %s" % (args.server, e.code().name, e.details()), file=sys.stderr)
        return 1
    finally:
        board.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
