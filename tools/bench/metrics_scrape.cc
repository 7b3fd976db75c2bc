#include "tools/bench/metrics_scrape.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ms_rendezvous::bench {
namespace {

// Closes the socket on every return path.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Waits until `fd` is ready for `events` or `deadline` passed; false on timeout or error.
bool WaitFd(int fd, short events, absl::Time deadline) {
  while (true) {
    int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0) return false;
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, ms);
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

absl::StatusOr<MetricSamples> ScrapeMetrics(const std::string& host_port, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address ", host_port, " is not HOST:PORT"));
  }
  std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics address ", host_port, ": ", gai_strerror(rc)));
  }
  Fd sock;
  sock.fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int rc = sock.fd < 0 ? -1 : connect(sock.fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (sock.fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  if (rc != 0 && errno != EINPROGRESS) {
    return absl::UnavailableError(absl::StrCat("connect ", host_port, ": ", strerror(errno)));
  }
  if (!WaitFd(sock.fd, POLLOUT, deadline)) {
    return absl::UnavailableError(absl::StrCat("connect ", host_port, ": timed out"));
  }
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return absl::UnavailableError(absl::StrCat("connect ", host_port, ": ", strerror(err)));

  const std::string request =
      absl::StrCat("GET /metrics HTTP/1.0\r\nHost: ", host_port, "\r\nAccept: text/plain\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    if (!WaitFd(sock.fd, POLLOUT, deadline)) {
      return absl::UnavailableError(absl::StrCat("GET ", host_port, "/metrics: send timed out"));
    }
    ssize_t n = send(sock.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("GET ", host_port, "/metrics: ", strerror(errno)));
    }
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[65536];
  while (true) {
    if (!WaitFd(sock.fd, POLLIN, deadline)) {
      return absl::UnavailableError(absl::StrCat("GET ", host_port, "/metrics: no complete answer within ",
                                                 absl::FormatDuration(timeout)));
    }
    ssize_t n = recv(sock.fd, buf, sizeof(buf), 0);
    if (n == 0) break;  // HTTP/1.0: the server closes after the body
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("GET ", host_port, "/metrics: ", strerror(errno)));
    }
    response.append(buf, static_cast<size_t>(n));
  }
  size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos || !absl::StartsWith(response, "HTTP/1.") ||
      response.find(" 200 ") > response.find("\r\n")) {
    return absl::UnavailableError(absl::StrCat("GET ", host_port, "/metrics: unexpected answer: ",
                                               response.substr(0, response.find("\r\n"))));
  }
  return ParseMetricsText(absl::string_view(response).substr(body + 4));
}

MetricSamples ParseMetricsText(absl::string_view text) {
  MetricSamples samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    // The series ends at the closing brace of its labels (label values may hold spaces), else at
    // the first space; the value follows, then an optional timestamp.
    size_t end = line.find('{') != absl::string_view::npos ? line.rfind('}') + 1 : line.find(' ');
    if (end == absl::string_view::npos || end == 0 || end >= line.size()) continue;
    absl::string_view series = line.substr(0, end);
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(line.substr(end));
    absl::string_view value = rest.substr(0, rest.find(' '));
    double v = 0;
    if (!absl::SimpleAtod(value, &v)) continue;
    samples[std::string(series)] = v;
  }
  return samples;
}

double SumOf(const MetricSamples& samples, absl::string_view name) {
  double sum = 0;
  for (auto it = samples.lower_bound(std::string(name)); it != samples.end(); ++it) {
    absl::string_view series = it->first;
    if (!absl::StartsWith(series, name)) break;
    absl::string_view rest = series.substr(name.size());
    if (rest.empty() || rest[0] == '{') sum += it->second;
  }
  return sum;
}

}  // namespace ms_rendezvous::bench
