#include "tools/bench/local_daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "glog/logging.h"

extern char** environ;

namespace ms_rendezvous::bench {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// How a waited-for child ended, for messages.
std::string DescribeExit(int wstatus) {
  if (WIFEXITED(wstatus)) return absl::StrCat("exited with status ", WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) return absl::StrCat("was killed by signal ", WTERMSIG(wstatus));
  return "ended";
}

}  // namespace

absl::StatusOr<ProcStats> ReadProcStats(pid_t pid) {
  ProcStats stats;
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return absl::NotFoundError(absl::StrCat("no process ", pid, " on this host"));
  // The command name (field 2) may contain spaces and parentheses: fields resume after the last
  // ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return absl::InternalError("malformed /proc/PID/stat");
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InternalError("malformed /proc/PID/stat");
  }
  stats.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));

  absl::StatusOr<std::string> status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status.ok()) return absl::NotFoundError(absl::StrCat("no process ", pid, " on this host"));
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    int64_t* target = nullptr;
    if (absl::ConsumePrefix(&line, "VmRSS:")) target = &stats.rss_kib;
    if (absl::ConsumePrefix(&line, "VmHWM:")) target = &stats.peak_kib;
    if (target == nullptr) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, " kB");
    if (!absl::SimpleAtoi(line, target)) return absl::InternalError("malformed /proc/PID/status");
  }
  return stats;
}

absl::Status ResetPeakRss(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/clear_refs");
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("open ", path));
  }
  ssize_t written = write(fd, "5", 1);
  int err = errno;
  close(fd);
  if (written != 1) return absl::ErrnoToStatus(err, absl::StrCat("write ", path));
  return absl::OkStatus();
}

absl::StatusOr<SettledStats> WaitForRssToSettle(pid_t pid, absl::Duration min_wait,
                                                absl::Duration max_wait, absl::Duration interval,
                                                double tolerance) {
  absl::Time start = absl::Now();
  absl::StatusOr<ProcStats> previous = ReadProcStats(pid);
  if (!previous.ok()) return previous.status();
  SettledStats settled;
  while (true) {
    absl::SleepFor(interval);
    absl::StatusOr<ProcStats> current = ReadProcStats(pid);
    if (!current.ok()) return current.status();
    absl::Duration waited = absl::Now() - start;
    settled.stats = *current;
    settled.waited_s = absl::ToDoubleSeconds(waited);
    double base = static_cast<double>(std::max<int64_t>(previous->rss_kib, 1));
    double change = std::abs(static_cast<double>(current->rss_kib - previous->rss_kib)) / base;
    VLOG(1) << "pid " << pid << " rss " << current->rss_kib << " KiB after " << settled.waited_s
            << " s";
    if (change < tolerance && waited >= min_wait) {
      settled.stable = true;
      return settled;
    }
    if (waited >= max_wait) return settled;
    previous = current;
  }
}

absl::StatusOr<std::string> SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return absl::InternalError(absl::StrCat("readlink /proc/self/exe: ", strerror(errno)));
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

absl::StatusOr<std::unique_ptr<LocalDaemon>> LocalDaemon::Start(
    const std::string& binary, const std::vector<std::string>& extra, absl::Duration timeout,
    bool state_dir, bool metrics) {
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("daemon binary ", binary,
                     " is missing or not executable; build ms-rendezvousd or pass "
                     "--server HOST:PORT of a running daemon"));
  }
  std::unique_ptr<LocalDaemon> daemon(new LocalDaemon());
  char dir_template[] = "/tmp/ms-rendezvous-bench.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  daemon->dir_ = dir_template;
  daemon->log_path_ = daemon->dir_ + "/daemon.log";
  daemon->binary_ = binary;
  daemon->extra_ = extra;
  if (state_dir) {
    std::string dir = daemon->dir_ + "/state";
    mkdir(dir.c_str(), 0755);
    daemon->extra_.push_back("--state-dir");
    daemon->extra_.push_back(dir);
  }
  if (metrics) {
    daemon->metrics_ = true;
    daemon->extra_.push_back("--metrics-listen=127.0.0.1:0");
    daemon->extra_.push_back(absl::StrCat("--metrics-port-file=", daemon->dir_, "/metrics-port"));
  }
  absl::Status started = daemon->Spawn("127.0.0.1:0", timeout);
  if (!started.ok()) return started;
  return daemon;
}

void LocalDaemon::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int wstatus = 0;
  waitpid(pid_, &wstatus, 0);
  pid_ = -1;
}

absl::Status LocalDaemon::Restart(absl::Duration timeout) {
  if (pid_ > 0) return absl::FailedPreconditionError("the daemon is still running");
  size_t colon = address_.rfind(':');
  return Spawn(absl::StrCat("127.0.0.1:", address_.substr(colon + 1)), timeout);
}

absl::Status LocalDaemon::Spawn(const std::string& listen, absl::Duration timeout) {
  // The port file does not exist yet: the daemon creates it once listening, so "exists and holds a
  // number" means "ready".
  std::string port_file = dir_ + "/port";
  unlink(port_file.c_str());

  std::vector<std::string> args = {binary_, "--listen", listen, "--port-file", port_file};
  args.insert(args.end(), extra_.begin(), extra_.end());
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  // Append: a restarted daemon's log follows the first one's.
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  int rc = posix_spawn(&pid_, binary_.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    return absl::InternalError(absl::StrCat("spawning ", binary_, ": ", strerror(rc)));
  }

  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      KeepLogs();
      return absl::UnavailableError(absl::StrCat("ms-rendezvousd ", DescribeExit(wstatus),
                                                 " before listening; its log (", log_path_,
                                                 ") ends with:\n", LogTail()));
    }
    absl::StatusOr<std::string> text = ReadFile(port_file);
    int port = 0;
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port) && port > 0) {
      address_ = absl::StrCat("127.0.0.1:", port);
      if (metrics_) {
        // Written before the main port file (the exporter binds first), so present by now.
        absl::StatusOr<std::string> mtext = ReadFile(dir_ + "/metrics-port");
        int mport = 0;
        if (!mtext.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*mtext), &mport) ||
            mport <= 0) {
          KeepLogs();
          return absl::UnavailableError(absl::StrCat(
              "ms-rendezvousd is listening but wrote no metrics port to ", dir_,
              "/metrics-port; its log (", log_path_, ") ends with:\n", LogTail()));
        }
        metrics_address_ = absl::StrCat("127.0.0.1:", mport);
      }
      return absl::OkStatus();
    }
    if (absl::Now() > deadline) {
      KeepLogs();
      return absl::UnavailableError(
          absl::StrCat("ms-rendezvousd did not write its port to ", port_file, " within ",
                       absl::FormatDuration(timeout), "; its log (", log_path_,
                       ") ends with:\n", LogTail()));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::string LocalDaemon::LogTail(size_t max_bytes) const {
  absl::StatusOr<std::string> log = ReadFile(log_path_);
  if (!log.ok()) return "(no log)";
  if (log->size() > max_bytes) return "..." + log->substr(log->size() - max_bytes);
  return *log;
}

absl::Status LocalDaemon::Stop(absl::Duration grace) {
  if (pid_ <= 0) return absl::OkStatus();
  pid_t pid = pid_;
  pid_ = -1;
  kill(pid, SIGTERM);
  absl::Time deadline = absl::Now() + grace;
  int wstatus = 0;
  while (waitpid(pid, &wstatus, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      keep_logs_ = true;
      return absl::InternalError(absl::StrCat("ms-rendezvousd did not stop within ",
                                              absl::FormatDuration(grace),
                                              " of SIGTERM and was killed; log: ", log_path_));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    keep_logs_ = true;
    return absl::InternalError(
        absl::StrCat("ms-rendezvousd ", DescribeExit(wstatus), " on SIGTERM; log: ", log_path_));
  }
  return absl::OkStatus();
}

LocalDaemon::~LocalDaemon() {
  if (absl::Status s = Stop(); !s.ok()) LOG(WARNING) << s.message();
  if (!dir_.empty() && !keep_logs_) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  } else if (!dir_.empty()) {
    LOG(WARNING) << "kept the daemon's log in " << log_path_;
  }
}

}  // namespace ms_rendezvous::bench
