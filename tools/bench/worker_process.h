// Worker processes of ms-rendezvous-bench: a scenario with --processes P splits its members over
// P copies of this binary (`ms-rendezvous-bench SCENARIO-worker ...`), each driven over its
// stdin/stdout with one command and one answer per line. One client process cannot stand in for
// thousands of member processes: gRPC's per-call work grows with the calls outstanding in one
// process, and one event loop noticing 10,000 closed connections is slower than the daemon it is
// meant to measure. Separate processes are also what real members are.
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_WORKER_PROCESS_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_WORKER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ms_rendezvous::bench {

// Worker k's share of `members` members and `connections` connections split over `processes`
// workers: members first..first+count-1, evenly, over at least one and at most `count`
// connections of its own.
struct WorkerShare {
  uint32_t first = 0;
  uint32_t count = 0;
  uint32_t connections = 0;
};
WorkerShare ShareOf(uint32_t members, uint32_t connections, uint32_t processes, uint32_t k);

// One line of text for the worker protocol (no newlines inside).
std::string OneLine(std::string s);

// Worker side: writes `line` and a newline to stdout and flushes (the parent waits for it).
void SayLine(const std::string& line);

// Parent side: one worker process and its line protocol. The worker must print CONNECTED once it
// is ready for commands; it must exit when its stdin closes (which the destructor does, then
// reaps it, killing it after 30 s).
class WorkerProcess {
 public:
  // args[0] is the executable; `name` names the worker in errors ("restart worker").
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Spawn(const std::vector<std::string>& args,
                                                              const std::string& name);
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Sends one command line; a worker that is gone shows up at the next read.
  void Send(const std::string& line);
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // Reads the next line; it must be `tag` followed by at least `fields` space-separated fields,
  // which are returned; the text after them (which may contain spaces) is left in rest().
  absl::StatusOr<std::vector<std::string>> Expect(const char* tag, size_t fields,
                                                  absl::Duration timeout);
  const std::string& rest() const { return rest_; }
  absl::Status Malformed(const char* what) const;

 private:
  WorkerProcess(pid_t pid, int in, int out, std::string name)
      : pid_(pid), in_(in), out_(out), name_(std::move(name)) {}

  const pid_t pid_;
  int in_ = -1;   // its stdin
  int out_ = -1;  // its stdout
  const std::string name_;
  std::string buf_;
  std::string rest_;
};

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_WORKER_PROCESS_H_
