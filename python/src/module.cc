// _ms_rendezvous: pybind11 bindings of the ms_rendezvous client library (client.h, init.h) for the
// ms_rendezvous Python package (python/ms_rendezvous/__init__.py re-exports everything).
//
// GIL and Ctrl-C: every call into the client library runs with the GIL released. Calls that may
// block for long (join, leave, kv_get, kv_wait, barrier, fetch_root_info, init) run on a helper
// thread while the calling thread waits in 100 ms slices, re-acquiring the GIL between slices to
// run PyErr_CheckSignals(): a pending KeyboardInterrupt (or any exception a signal handler
// raises) is raised at once. The library has no cancellation, so the helper thread then keeps
// the call running until it ends on its own (a timeout, the job ending, the daemon answering);
// it holds a reference to the C++ client meanwhile and discards the result.
//
// Event callbacks run on the client's session thread with the GIL acquired; an exception they
// raise is reported through sys.unraisablehook (printed to stderr), never propagated.
//
// Errors: an absl::Status becomes ms_rendezvous._errors._make_error(code name, message), a
// RendezvousError subclass per code.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ms_rendezvous/client.h"
#include "ms_rendezvous/init.h"
#include "ms_rendezvous/options.h"

namespace py = pybind11;
namespace msr = ms_rendezvous;

namespace {

// False once the interpreter is shutting down: no GIL may be taken then.
bool PythonAlive() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

// A str from bytes that should be UTF-8 (messages may quote binary keys).
py::str Utf8(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()),
                                     "backslashreplace");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

py::bytes Bytes(const std::string& s) { return py::bytes(s.data(), s.size()); }

// Raises the RendezvousError subclass of `status` (GIL held).
[[noreturn]] void ThrowStatus(const absl::Status& status) {
  py::object make = py::module_::import("ms_rendezvous._errors").attr("_make_error");
  py::object exc = make(absl::StatusCodeToString(status.code()), Utf8(std::string(status.message())));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

void Check(const absl::Status& status) {
  if (!status.ok()) ThrowStatus(status);
}

template <typename T>
T Value(absl::StatusOr<T>&& v) {
  if (!v.ok()) ThrowStatus(v.status());
  return std::move(*v);
}

// bytes, bytearray or str (UTF-8) -> std::string; TypeError otherwise.
std::string ToBytes(py::handle h, const char* what) {
  PyObject* o = h.ptr();
  if (PyBytes_Check(o)) return std::string(PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
  if (PyByteArray_Check(o)) return std::string(PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o));
  if (PyUnicode_Check(o)) {
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(o, &n);
    if (p == nullptr) throw py::error_already_set();
    return std::string(p, n);
  }
  throw py::type_error(absl::StrCat(what, " must be bytes or str, not ",
                                    std::string(py::str(py::type::handle_of(h).attr("__name__")))));
}

// None -> InfiniteDuration (or `none_value`); float seconds otherwise (negative passed on: the
// library answers InvalidArgument).
absl::Duration ToTimeout(const py::object& t, absl::Duration none_value = absl::InfiniteDuration()) {
  if (t.is_none()) return none_value;
  if (!PyFloat_Check(t.ptr()) && !PyLong_Check(t.ptr())) {
    throw py::type_error("timeout must be a number of seconds or None");
  }
  double s = t.cast<double>();
  if (std::isnan(s)) throw py::value_error("timeout must not be NaN");
  if (std::isinf(s)) return s > 0 ? absl::InfiniteDuration() : absl::Seconds(-1);
  return absl::Seconds(s);
}

// Runs `fn` (no GIL, no Python objects) on a helper thread; the caller waits in 100 ms slices
// and checks for signals in between (see the top of this file).
template <typename F>
auto RunBlocking(F fn) -> decltype(fn()) {
  using R = decltype(fn());
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::optional<R> result;
  };
  auto state = std::make_shared<State>();
  std::thread thread([state, fn = std::move(fn)]() mutable {
    R r = fn();
    std::lock_guard<std::mutex> lock(state->mu);
    state->result.emplace(std::move(r));
    state->done = true;
    state->cv.notify_all();
  });
  for (;;) {
    bool done = false;
    {
      py::gil_scoped_release release;
      std::unique_lock<std::mutex> lock(state->mu);
      done = state->cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return state->done; });
    }
    if (done) break;
    if (PyErr_CheckSignals() != 0) {
      thread.detach();  // finishes on its own; keeps `state` and what `fn` captured alive
      throw py::error_already_set();
    }
  }
  thread.join();
  return std::move(*state->result);
}

template <typename F>
auto NoGil(F fn) -> decltype(fn()) {
  py::gil_scoped_release release;
  return fn();
}

// A Python object that may be dropped on any thread (acquires the GIL; leaks at shutdown).
struct PyRef {
  explicit PyRef(py::object o) : obj(std::move(o)) {}
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() {
    if (!PythonAlive()) {
      obj.release();
      return;
    }
    py::gil_scoped_acquire gil;
    obj = py::object();
  }
  py::object obj;
};

// os.environ-like lookup: `overrides` (None = unset) first, then the process environment.
msr::EnvLookup MakeEnv(const py::object& env) {
  if (env.is_none()) return msr::ProcessEnv();
  auto overrides = std::make_shared<std::map<std::string, std::optional<std::string>>>();
  for (auto item : py::dict(env)) {
    std::string name = py::str(item.first);
    if (item.second.is_none()) {
      (*overrides)[name] = std::nullopt;
    } else {
      (*overrides)[name] = std::string(py::str(item.second));
    }
  }
  msr::EnvLookup process = msr::ProcessEnv();
  return [overrides, process](const std::string& name) -> std::optional<std::string> {
    auto it = overrides->find(name);
    if (it != overrides->end()) return it->second;
    return process(name);
  };
}

py::object OptionalRank(const std::optional<uint32_t>& rank) {
  if (!rank.has_value()) return py::none();
  return py::int_(*rank);
}

py::dict MemberDict(const msr::MemberInfo& m) {
  py::dict d;
  d["node_id"] = Utf8(m.node_id);
  d["role"] = std::string(msr::RoleName(m.role));
  d["rank"] = OptionalRank(m.rank);
  d["local_rank"] = m.local_rank;
  d["node_rank"] = m.node_rank;
  d["host"] = Utf8(m.host);
  d["host_name"] = Utf8(m.host_name);
  d["device_id"] = m.device_id;
  d["device_ip"] = Utf8(m.device_ip);
  d["state"] = std::string(msr::MemberStateName(m.state));
  d["last_heartbeat_age_s"] = m.last_heartbeat_age_s;
  d["incarnation"] = m.incarnation;
  return d;
}

py::dict DeadDict(const msr::DeadMember& m) {
  py::dict d;
  d["role"] = std::string(msr::RoleName(m.role));
  d["rank"] = OptionalRank(m.rank);
  d["node_id"] = Utf8(m.node_id);
  d["host"] = Utf8(m.host);
  d["reason"] = Utf8(m.reason);
  d["last_seen_s_ago"] = m.last_seen_s_ago;
  return d;
}

py::dict EventDict(const msr::SessionEvent& e) {
  py::dict d;
  d["type"] = std::string(msr::SessionEventTypeName(e.type));
  d["job_id"] = Utf8(e.job_id);
  d["job_state"] = std::string(msr::JobStateName(e.job_state));
  d["generation"] = e.generation;
  d["message"] = Utf8(e.message);
  py::list dead;
  for (const auto& m : e.dead) dead.append(DeadDict(m));
  d["dead"] = dead;
  d["member"] = e.member.has_value() ? py::object(MemberDict(*e.member)) : py::none();
  d["status_code"] = absl::StatusCodeToString(e.status.code());
  d["status_message"] = Utf8(std::string(e.status.message()));
  d["topology"] = e.topology.has_value() ? py::cast(*e.topology) : py::none();
  return d;
}

std::string TopologyRepr(const msr::Topology& t) {
  return absl::StrCat("Topology(job_id='", t.job_id, "', role='", msr::RoleName(t.role),
                      "', node_id='", t.node_id, "', rank=", t.rank, ", world_size=", t.world_size,
                      ", local_rank=", t.local_rank, ", local_world_size=", t.local_world_size,
                      ", node_rank=", t.node_rank, ", num_nodes=", t.num_nodes, ", host='", t.host,
                      "', generation=", t.generation, ", incarnation=", t.incarnation, ")");
}

py::dict TopologyDict(const msr::Topology& t) {
  py::dict d;
  d["job_id"] = Utf8(t.job_id);
  d["role"] = std::string(msr::RoleName(t.role));
  d["node_id"] = Utf8(t.node_id);
  d["rank"] = t.rank;
  d["world_size"] = t.world_size;
  d["local_rank"] = t.local_rank;
  d["local_world_size"] = t.local_world_size;
  d["node_rank"] = t.node_rank;
  d["num_nodes"] = t.num_nodes;
  d["host"] = Utf8(t.host);
  d["generation"] = t.generation;
  d["incarnation"] = t.incarnation;
  d["worker_num"] = t.worker_num;
  d["server_num"] = t.server_num;
  return d;
}

// The Python Client: owns the C++ client through a shared_ptr so that a call interrupted by
// Ctrl-C (still running on its helper thread) keeps it alive.
class PyClient {
 public:
  explicit PyClient(std::unique_ptr<msr::Client> client) : client_(std::move(client)) {}
  PyClient(const PyClient&) = delete;
  PyClient& operator=(const PyClient&) = delete;
  ~PyClient() { Close(); }

  std::shared_ptr<msr::Client> Get() const {
    if (!client_) ThrowStatus(absl::FailedPreconditionError("the Client was closed"));
    return client_;
  }

  // Destroys the C++ client (which leaves the job when joined) without the GIL: its session
  // thread may be waiting for the GIL to run the event callback.
  void Close() {
    std::shared_ptr<msr::Client> client;
    client.swap(client_);
    if (!client) return;
    if (PythonAlive() && PyGILState_Check()) {
      py::gil_scoped_release release;
      client.reset();
    } else {
      client.reset();
    }
  }

 private:
  std::shared_ptr<msr::Client> client_;
};

struct PyInitResult {
  std::string method;
  msr::Topology topology;
  py::object client = py::none();
  std::string master_addr;
};

std::vector<std::string> KeyList(const py::iterable& keys) {
  if (py::isinstance<py::bytes>(keys) || py::isinstance<py::str>(keys)) {
    throw py::type_error("keys must be a list of keys, not a single key");
  }
  std::vector<std::string> out;
  for (auto k : keys) out.push_back(ToBytes(k, "key"));
  return out;
}

}  // namespace

PYBIND11_MODULE(_ms_rendezvous, m) {
  m.doc() =
      "Bindings of the ms_rendezvous C++ client library. Use the ms_rendezvous package, which "
      "re-exports everything here and defines the exception classes.";

  py::class_<msr::Topology>(m, "Topology",
                            "Where this process landed in the job (Client.join(), init()). Ranks "
                            "count per role (workers and parameter servers separately).")
      .def_readonly("job_id", &msr::Topology::job_id, "The job id (MS_JOB_ID).")
      .def_property_readonly(
          "role", [](const msr::Topology& t) { return std::string(msr::RoleName(t.role)); },
          "\"MS_WORKER\" or \"MS_PSERVER\".")
      .def_readonly("node_id", &msr::Topology::node_id, "This member's node id (MS_NODE_ID).")
      .def_readonly("rank", &msr::Topology::rank, "Rank within the role, 0..world_size-1.")
      .def_readonly("world_size", &msr::Topology::world_size, "Members of this role.")
      .def_readonly("local_rank", &msr::Topology::local_rank,
                    "Index among this role's members on the same host address.")
      .def_readonly("local_world_size", &msr::Topology::local_world_size,
                    "This role's members on the same host address.")
      .def_readonly("node_rank", &msr::Topology::node_rank,
                    "Index of this host among the role's hosts.")
      .def_readonly("num_nodes", &msr::Topology::num_nodes, "Distinct host addresses of the role.")
      .def_readonly("host", &msr::Topology::host,
                    "The address the daemon recorded for this process.")
      .def_readonly("generation", &msr::Topology::generation, "Formation counter of the job.")
      .def_readonly("incarnation", &msr::Topology::incarnation, "This registration's incarnation.")
      .def_readonly("worker_num", &msr::Topology::worker_num, "MS_WORKER_NUM of the job.")
      .def_readonly("server_num", &msr::Topology::server_num, "MS_SERVER_NUM of the job.")
      .def("as_dict", &TopologyDict, "Every attribute as a dict.")
      .def("__repr__", &TopologyRepr);

  py::class_<PyInitResult>(m, "InitResult", "What init() found (see init()).")
      .def_readonly("method", &PyInitResult::method,
                    "\"dynamic_cluster\", \"openmpi\" or \"rank_table\".")
      .def_readonly("topology", &PyInitResult::topology, "This process's Topology.")
      .def_readonly("client", &PyInitResult::client,
                    "The joined Client when a daemon is involved (dynamic cluster; OpenMPI with "
                    "MS_SCHED_HOST), else None.")
      .def_readonly("master_addr", &PyInitResult::master_addr,
                    "Host of rank 0 when known without a daemon (rank table), else \"\".")
      .def("__repr__", [](const PyInitResult& r) {
        return absl::StrCat("InitResult(method='", r.method, "', topology=",
                            TopologyRepr(r.topology), ", client=",
                            r.client.is_none() ? "None" : "<Client>", ")");
      });

  py::class_<PyClient>(m, "Client",
                       "A member of a training job, talking to the ms-rendezvous daemon (or the "
                       "job's embedded scheduler). Create it with Client.from_env(), then join(). "
                       "Thread-safe: KV calls may run from several threads at once. Closing or "
                       "garbage-collecting a joined Client leaves the job.")
      .def_static(
          "from_env",
          [](py::object env) {
            msr::EnvLookup lookup = MakeEnv(env);
            msr::ClientOptions options = Value(msr::ParseClientOptions(lookup));
            std::unique_ptr<msr::Client> client =
                Value(NoGil([&] { return msr::Client::Create(std::move(options)); }));
            return std::make_unique<PyClient>(std::move(client));
          },
          py::arg("env") = py::none(),
          "Creates a client from the MindSpore environment contract (MS_ROLE, MS_SCHED_HOST, "
          "MS_SCHED_PORT, MS_WORKER_NUM, MS_NODE_ID, MS_JOB_ID, MS_TOPO_TIMEOUT, ...). `env` "
          "(a dict) overrides entries of os.environ; a None value unsets one. Does not connect "
          "yet. Raises InvalidArgumentError naming the offending variable.")
      .def(
          "join",
          [](PyClient& self) {
            auto c = self.Get();
            return Value(RunBlocking([c] { return c->Join(); }));
          },
          "Joins the job and blocks until every expected member joined; returns this process's "
          "Topology. The session (heartbeats, reconnect) then runs on a background thread. "
          "Raises DeadlineExceededError (MS_TOPO_TIMEOUT; names who is missing), AbortedError "
          "(the job failed), UnavailableError, AlreadyExistsError, FailedPreconditionError, ... "
          "Interruptible with Ctrl-C.")
      .def(
          "leave",
          [](PyClient& self) {
            auto c = self.Get();
            Check(RunBlocking([c] { return c->Leave(); }));
          },
          "Leaves the job (idempotent); the job finishes once every member left. Raises the "
          "session's failure when it had failed, FailedPreconditionError when never joined.")
      .def(
          "close", [](PyClient& self) { self.Close(); },
          "Destroys the underlying client: leaves the job (best effort) when joined and stops the "
          "session thread. Every later call raises FailedPreconditionError.")
      .def(
          "__enter__", [](py::object self) { return self; },
          "Returns the client; `with Client.from_env() as c:` closes it at the end.")
      .def(
          "__exit__", [](PyClient& self, py::args) { self.Close(); },
          "Closes the client (leaving the job when joined).")
      .def(
          "report_error",
          [](PyClient& self, const std::string& reason) {
            auto c = self.Get();
            Check(NoGil([&] { return c->ReportError(reason); }));
          },
          py::arg("reason"),
          "Tells the daemon that this member failed: the job fails and every other member is "
          "told, with `reason`. This member's session ends (session_status() then raises "
          "AbortedError).")
      .def(
          "session_status",
          [](PyClient& self) {
            auto c = self.Get();
            Check(NoGil([&] { return c->SessionStatus(); }));
          },
          "Returns None while the session is healthy; raises its failure (AbortedError naming "
          "the dead members) once the job failed or the session was lost.")
      .def(
          "set_event_callback",
          [](PyClient& self, py::object fn) {
            auto c = self.Get();
            std::function<void(const msr::SessionEvent&)> cb;
            if (!fn.is_none()) {
              if (!PyCallable_Check(fn.ptr())) throw py::type_error("callback must be callable");
              auto ref = std::make_shared<PyRef>(fn);
              cb = [ref](const msr::SessionEvent& event) {
                if (!PythonAlive()) return;
                py::gil_scoped_acquire gil;
                try {
                  ref->obj(EventDict(event));
                } catch (py::error_already_set& e) {
                  e.discard_as_unraisable(ref->obj);
                } catch (const std::exception& e) {
                  PySys_WriteStderr("ms_rendezvous event callback failed: %.500s\n", e.what());
                }
              };
            }
            NoGil([&] {
              c->SetEventCallback(std::move(cb));
              return 0;
            });
          },
          py::arg("fn"),
          "Calls fn(event) for what happens to this client's session, on the session thread "
          "with the GIL held, one event at a time. event is a dict: type (\"job_failed\", "
          "\"member_dead\", \"member_recovered\", \"resumed\", \"session_lost\"), job_id, "
          "job_state, generation, message, dead (list of dicts: role, rank, node_id, host, "
          "reason, last_seen_s_ago), member (dict or None), status_code (e.g. \"ABORTED\"), "
          "status_message, topology (Topology or None). Exceptions raised by fn are printed "
          "(sys.unraisablehook), not propagated. fn must return quickly and must not call "
          "join/leave/report_error. Set it before join(); None removes it.")
      .def(
          "members",
          [](PyClient& self) {
            auto c = self.Get();
            std::vector<msr::MemberInfo> members = Value(NoGil([&] { return c->Members(); }));
            py::list out;
            for (const auto& mi : members) out.append(MemberDict(mi));
            return out;
          },
          "The job's member table: a list of dicts (node_id, role, rank (None before the job "
          "is complete), local_rank, node_rank, host, host_name, device_id, device_ip, state, "
          "last_heartbeat_age_s, incarnation).")
      .def(
          "kv_set",
          [](PyClient& self, py::object key, py::object value) {
            auto c = self.Get();
            std::string k = ToBytes(key, "key"), v = ToBytes(value, "value");
            Check(NoGil([&] { return c->KvSet(k, v); }));
          },
          py::arg("key"), py::arg("value"),
          "Creates or overwrites `key` (bytes or str) with `value` (bytes or str; str is stored "
          "UTF-8) and releases every waiter of it. Raises ResourceExhaustedError on a KV limit.")
      .def(
          "kv_get",
          [](PyClient& self, py::object key, py::object timeout) {
            auto c = self.Get();
            std::string k = ToBytes(key, "key");
            absl::Duration t = ToTimeout(timeout);
            std::string v = Value(RunBlocking([c, k, t] { return c->KvGet(k, t); }));
            return Bytes(v);
          },
          py::arg("key"), py::arg("timeout") = py::none(),
          "The value (bytes) of `key`, waiting up to `timeout` seconds for it to be set (None: "
          "until the job ends; 0: try once). Raises DeadlineExceededError (also TimeoutError; "
          "the message names the key), NotFoundError (timeout 0), AbortedError (the job failed: "
          "names the dead). Interruptible with Ctrl-C.")
      .def(
          "kv_try_get",
          [](PyClient& self, py::object key) {
            auto c = self.Get();
            std::string k = ToBytes(key, "key");
            std::string v = Value(NoGil([&] { return c->KvTryGet(k); }));
            return Bytes(v);
          },
          py::arg("key"),
          "The value (bytes) of `key` without waiting. Raises NotFoundError (also LookupError) "
          "when it is missing.")
      .def(
          "kv_wait",
          [](PyClient& self, py::iterable keys, py::object timeout) {
            auto c = self.Get();
            std::vector<std::string> ks = KeyList(keys);
            absl::Duration t = ToTimeout(timeout);
            Check(RunBlocking([c, ks, t] { return c->KvWait(ks, t); }));
          },
          py::arg("keys"), py::arg("timeout") = py::none(),
          "Returns once every key of `keys` (a list of bytes/str) exists, waiting up to "
          "`timeout` seconds (None: until the job ends; 0: check once). Raises "
          "DeadlineExceededError listing the keys still missing. Interruptible with Ctrl-C.")
      .def(
          "kv_add",
          [](PyClient& self, py::object key, int64_t delta) {
            auto c = self.Get();
            std::string k = ToBytes(key, "key");
            return Value(NoGil([&] { return c->KvAdd(k, delta); }));
          },
          py::arg("key"), py::arg("delta"),
          "Adds `delta` atomically to the decimal int64 stored at `key` (missing: 0) and returns "
          "the new value. Raises FailedPreconditionError when the value is not a decimal int64.")
      .def(
          "kv_compare_set",
          [](PyClient& self, py::object key, py::object expected, py::object desired) {
            auto c = self.Get();
            std::string k = ToBytes(key, "key"), e = ToBytes(expected, "expected"),
                        d = ToBytes(desired, "desired");
            msr::KvCompareSetResult r = Value(NoGil([&] { return c->KvCompareSet(k, e, d); }));
            return py::make_tuple(Bytes(r.value), r.swapped);
          },
          py::arg("key"), py::arg("expected"), py::arg("desired"),
          "torch.distributed.Store compare_set: when the value of `key` equals `expected` (or "
          "the key is missing and `expected` is empty) it becomes `desired`. Returns (value "
          "after the call, swapped).")
      .def(
          "kv_delete",
          [](PyClient& self, py::object key) {
            auto c = self.Get();
            std::string k = ToBytes(key, "key");
            return Value(NoGil([&] { return c->KvDelete(k); }));
          },
          py::arg("key"), "Deletes `key`; True when it existed.")
      .def(
          "kv_list",
          [](PyClient& self, py::object prefix) {
            auto c = self.Get();
            std::string p = ToBytes(prefix, "prefix");
            auto entries = Value(NoGil([&] { return c->KvList(p); }));
            py::list out;
            for (const auto& [k, v] : entries) out.append(py::make_tuple(Bytes(k), Bytes(v)));
            return out;
          },
          py::arg("prefix") = py::bytes(""),
          "Every (key, value) (both bytes) whose key starts with `prefix`, ordered by key.")
      .def(
          "kv_num_keys",
          [](PyClient& self) {
            auto c = self.Get();
            return Value(NoGil([&] { return c->KvNumKeys(); }));
          },
          "Number of keys in the job's store.")
      .def(
          "barrier",
          [](PyClient& self, const std::string& name, py::object timeout,
             std::optional<std::vector<int64_t>> ranks) {
            auto c = self.Get();
            absl::Duration t = ToTimeout(timeout);
            std::vector<uint32_t> rs;
            if (ranks.has_value()) {
              for (int64_t r : *ranks) {
                if (r < 0 || r > UINT32_MAX) throw py::value_error("ranks must be >= 0");
                rs.push_back(static_cast<uint32_t>(r));
              }
            }
            Check(RunBlocking([c, name, t, rs] { return c->Barrier(name, t, rs); }));
          },
          py::arg("name"), py::arg("timeout"), py::arg("ranks") = py::none(),
          "Blocks until every participant arrived at barrier `name`: `ranks` of this member's "
          "role (None: all of them). `timeout` in seconds (None: until the job ends) is fixed "
          "by the first arrival. Raises DeadlineExceededError listing who did not arrive, "
          "FailedPreconditionError (participants disagree on ranks), InvalidArgumentError. "
          "Interruptible with Ctrl-C.")
      .def(
          "publish_root_info",
          [](PyClient& self, const std::string& group, py::object data) {
            auto c = self.Get();
            std::string d = ToBytes(data, "data");
            Check(NoGil([&] { return c->PublishRootInfo(group, d); }));
          },
          py::arg("group"), py::arg("data"),
          "Publishes the root info (NCCL unique id, HCCL root info) of `group` under MindSpore's "
          "key \"<role>_group_info_<group>\". Only the group's rank 0 may publish (checked for "
          "the world groups: FailedPreconditionError).")
      .def(
          "fetch_root_info",
          [](PyClient& self, const std::string& group, py::object timeout) {
            auto c = self.Get();
            std::string v;
            if (timeout.is_none()) {
              v = Value(RunBlocking([c, group] { return c->FetchRootInfo(group); }));
            } else {
              absl::Duration t = ToTimeout(timeout);
              v = Value(RunBlocking([c, group, t] { return c->FetchRootInfo(group, t); }));
            }
            return Bytes(v);
          },
          py::arg("group"), py::arg("timeout") = py::none(),
          "Waits for the root info of `group` (see publish_root_info) up to `timeout` seconds "
          "(None: this process's MS_TOPO_TIMEOUT) and returns it (bytes). Raises "
          "DeadlineExceededError naming the key and the root rank. Interruptible with Ctrl-C.")
      .def_property_readonly(
          "node_id", [](PyClient& self) { return self.Get()->options().node_id; },
          "This member's node id (generated when MS_NODE_ID is unset).")
      .def_property_readonly(
          "job_id", [](PyClient& self) { return self.Get()->options().job_id; }, "The job id.")
      .def_property_readonly(
          "target", [](PyClient& self) { return self.Get()->target(); },
          "The scheduler address dialled first (\"HOST:PORT\").")
      .def("__repr__", [](PyClient& self) {
        return absl::StrCat("<ms_rendezvous.Client job_id='", self.Get()->options().job_id,
                            "' node_id='", self.Get()->options().node_id, "' target='",
                            self.Get()->target(), "'>");
      });

  m.def(
      "init",
      [](py::object env) {
        msr::EnvLookup lookup = MakeEnv(env);
        msr::InitResult r = Value(RunBlocking([lookup] { return msr::Init(lookup); }));
        PyInitResult out;
        out.method = std::string(msr::InitMethodName(r.method));
        out.topology = r.topology;
        out.master_addr = r.master_addr;
        if (r.client) {
          out.client = py::cast(new PyClient(std::move(r.client)),
                                py::return_value_policy::take_ownership);
        }
        return out;
      },
      py::arg("env") = py::none(),
      "Detects how this process was started and returns an InitResult (method, topology, "
      "client, master_addr), as the C++ ms_rendezvous::Init(): dynamic cluster (MS_ROLE set: "
      "joins the daemon, blocks until the job is complete), OpenMPI (OMPI_COMM_WORLD_*; joins "
      "the daemon when MS_SCHED_HOST is set) or rank table (RANK_TABLE_FILE + RANK_ID). `env` (a "
      "dict) overrides entries of os.environ; a None value unsets one. Raises "
      "InvalidArgumentError for a malformed environment, or what Client.join() raises. "
      "Interruptible with Ctrl-C.");
}
