#include "tools/bench/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/bench/bench_util.h"

extern char** environ;

namespace ms_rendezvous::bench {

WorkerShare ShareOf(uint32_t members, uint32_t connections, uint32_t processes, uint32_t k) {
  const uint32_t p = processes;
  WorkerShare s;
  s.first = static_cast<uint32_t>(uint64_t{members} * k / p);
  s.count = static_cast<uint32_t>(uint64_t{members} * (k + 1) / p) - s.first;
  const uint32_t c0 = static_cast<uint32_t>(uint64_t{connections} * k / p);
  const uint32_t c = static_cast<uint32_t>(uint64_t{connections} * (k + 1) / p) - c0;
  s.connections = std::min(std::max<uint32_t>(1, c), s.count);
  return s;
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

void SayLine(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Spawn(
    const std::vector<std::string>& args, const std::string& name) {
  int to_child[2], from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  if (pipe2(from_child, O_CLOEXEC) != 0) {
    close(to_child[0]);
    close(to_child[1]);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(to_child[0]);
  close(from_child[1]);
  if (rc != 0) {
    close(to_child[1]);
    close(from_child[0]);
    return absl::InternalError(absl::StrCat("spawning ", args[0], ": ", strerror(rc)));
  }
  std::unique_ptr<WorkerProcess> w(new WorkerProcess(pid, to_child[1], from_child[0], name));
  // Connecting thousands of channels on a loaded machine can take a while.
  absl::StatusOr<std::string> line = w->ReadLine(absl::Seconds(180));
  if (!line.ok()) return line.status();
  if (*line != "CONNECTED") {
    return absl::InternalError(absl::StrCat(name, ": unexpected \"", *line, "\""));
  }
  return w;
}

WorkerProcess::~WorkerProcess() {
  if (in_ >= 0) close(in_);  // EOF: the worker exits
  if (out_ >= 0) close(out_);
  const int64_t deadline = NowNs() + 30'000'000'000;
  int wstatus = 0;
  while (waitpid(pid_, &wstatus, WNOHANG) == 0) {
    if (NowNs() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &wstatus, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::Status WorkerProcess::Malformed(const char* what) const {
  return absl::InternalError(absl::StrCat(name_, ": malformed ", what, " line"));
}

void WorkerProcess::Send(const std::string& line) {
  std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(in_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the worker is gone; the next read says so
    done += static_cast<size_t>(n);
  }
}

absl::StatusOr<std::string> WorkerProcess::ReadLine(absl::Duration timeout) {
  const int64_t deadline = NowNs() + absl::ToInt64Nanoseconds(timeout);
  while (true) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    const int64_t left_ms = (deadline - NowNs()) / 1'000'000;
    if (left_ms <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(name_, " (pid ", pid_,
                                                      ") did not answer within ",
                                                      absl::FormatDuration(timeout)));
    }
    pollfd p{out_, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (rc < 0 && errno != EINTR) return absl::InternalError("poll failed");
    if (rc <= 0) continue;
    char chunk[65536];
    ssize_t n = read(out_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat(name_, " (pid ", pid_, ") exited; see its log above"));
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::vector<std::string>> WorkerProcess::Expect(const char* tag, size_t fields,
                                                               absl::Duration timeout) {
  absl::StatusOr<std::string> line = ReadLine(timeout);
  if (!line.ok()) return line.status();
  std::vector<std::string> parts = absl::StrSplit(*line, absl::MaxSplits(' ', fields + 1));
  if (parts.empty() || parts[0] != tag || parts.size() < fields + 1) {
    return absl::InternalError(absl::StrCat(name_, ": expected ", tag, ", got \"",
                                            line->substr(0, 200), "\""));
  }
  rest_ = parts.size() > fields + 1 ? parts[fields + 1] : std::string();
  return std::vector<std::string>(parts.begin() + 1, parts.begin() + 1 + fields);
}

}  // namespace ms_rendezvous::bench
