// Real processes for e2e tests: spawn a binary from build/bin with an environment, capture its
// stdout and stderr (to files, so a chatty child never blocks on a full pipe), wait with a
// timeout, signal it. Nothing here is mocked.
#ifndef MS_RENDEZVOUS_TESTS_E2E_SUBPROCESS_H_
#define MS_RENDEZVOUS_TESTS_E2E_SUBPROCESS_H_

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "../test_util.h"  // FreePort

namespace ms_rendezvous::testing {

// Directory of the built executables (set by CMake).
inline std::string BinDir() { return MSR_BIN_DIR; }

inline std::string TempDir() {
  static std::string dir = [] {
    std::string tmpl = "/tmp/msr-e2e-XXXXXX";
    char* d = mkdtemp(tmpl.data());
    return std::string(d == nullptr ? "/tmp" : d);
  }();
  return dir;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Subprocess {
 public:
  using Env = std::map<std::string, std::string>;

  // Starts BinDir()/binary with args; the environment is the test's own minus every MS_* and
  // rank variable, plus `env`.
  Subprocess(const std::string& binary, const std::vector<std::string>& args, const Env& env) {
    static int counter = 0;
    const std::string base = absl::StrCat(TempDir(), "/", binary, "-", getpid(), "-", counter++);
    out_path_ = base + ".out";
    err_path_ = base + ".err";
    std::vector<std::string> argv_s = {BinDir() + "/" + binary};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      if (kv.rfind("MS_", 0) == 0 || kv.rfind("RANK_", 0) == 0 || kv.rfind("DEVICE_ID=", 0) == 0) {
        continue;
      }
      env_s.push_back(kv);
    }
    for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
    pid_ = fork();
    if (pid_ == 0) {
      int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(err, 2);
      setpgid(0, 0);
      std::vector<char*> argv, envp;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      for (auto& e : env_s) envp.push_back(e.data());
      envp.push_back(nullptr);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
  }

  ~Subprocess() {
    if (!exit_code_.has_value() && pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Exit code (128 + signal when killed), or nullopt on timeout.
  std::optional<int> Wait(absl::Duration timeout = absl::Seconds(60)) {
    if (exit_code_.has_value()) return exit_code_;
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      if (absl::Now() >= deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  void Signal(int sig) { kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  std::string Stdout() const { return ReadFile(out_path_); }
  std::string Stderr() const { return ReadFile(err_path_); }

 private:
  pid_t pid_ = -1;
  std::string out_path_, err_path_;
  std::optional<int> exit_code_;
};

// A daemon on 127.0.0.1, port 0, for one test.
class Daemon {
 public:
  // `listen` defaults to a free port; a restart passes the previous daemon's address.
  explicit Daemon(std::vector<std::string> extra_args = {},
                  const std::string& listen = "127.0.0.1:0") {
    static int counter = 0;
    port_file_ = absl::StrCat(TempDir(), "/port-", getpid(), "-", counter++);
    std::vector<std::string> args = {"--listen", listen, "--port-file", port_file_};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    proc_ = std::make_unique<Subprocess>("ms-rendezvousd", args, Subprocess::Env{});
    for (int i = 0; i < 1000 && port_ == 0; ++i) {
      std::string text = ReadFile(port_file_);
      int port = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port)) port_ = port;
      else absl::SleepFor(absl::Milliseconds(10));
    }
  }
  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  Subprocess& proc() { return *proc_; }
  // MS_SCHED_HOST / MS_SCHED_PORT pointing at this daemon.
  Subprocess::Env SchedEnv() const {
    return {{"MS_SCHED_HOST", "127.0.0.1"}, {"MS_SCHED_PORT", std::to_string(port_)}};
  }

 private:
  std::string port_file_;
  int port_ = 0;
  std::unique_ptr<Subprocess> proc_;
};


// Reads an integer or string field from a one-line JSON object printed by our tools.
inline std::optional<std::string> JsonField(const std::string& line, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  auto pos = line.find(needle);
  if (pos == std::string::npos) return std::nullopt;
  pos += needle.size();
  if (pos < line.size() && line[pos] == '"') {
    auto end = line.find('"', pos + 1);
    return line.substr(pos + 1, end - pos - 1);
  }
  auto end = line.find_first_of(",}", pos);
  return line.substr(pos, end - pos);
}

inline int JsonInt(const std::string& line, const std::string& key) {
  int v = -1;
  auto f = JsonField(line, key);
  if (f.has_value() && !absl::SimpleAtoi(*f, &v)) v = -1;
  return v;
}

inline std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

// Polls a process's stdout until it contains `needle` (true) or `timeout` passes (false).
inline bool WaitForStdout(const Subprocess& p, const std::string& needle,
                          absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (p.Stdout().find(needle) != std::string::npos) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

// The lines of a process's stdout that contain `needle`.
inline std::vector<std::string> LinesWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (line.find(needle) != std::string::npos) out.push_back(line);
    start = end + 1;
  }
  return out;
}

// The daemon's Prometheus exposition text from 127.0.0.1:`port`/metrics (empty on failure).
inline std::string ScrapeMetrics(int port) {
  std::string cmd = absl::StrCat("curl -sf http://127.0.0.1:", port, "/metrics");
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

// Sum of every sample of `name` (any labels) in exposition text; -1 when absent.
inline double MetricSum(const std::string& text, const std::string& name) {
  double sum = -1;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, name)) continue;
    if (!rest.empty() && rest[0] != ' ' && rest[0] != '{') continue;
    double v = 0;
    if (!absl::SimpleAtod(rest.substr(rest.rfind(' ') + 1), &v)) continue;
    sum = (sum < 0 ? 0 : sum) + v;
  }
  return sum;
}

}  // namespace ms_rendezvous::testing

#endif  // MS_RENDEZVOUS_TESTS_E2E_SUBPROCESS_H_
