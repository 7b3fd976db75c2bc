#include "tools/bench/bench_util.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace ms_rendezvous::bench {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void Countdown::Done() {
  if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
}

void Countdown::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_; });
}

bool Countdown::WaitFor(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return done_; });
}

double PercentileMs(const std::vector<int64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted_ns.size())));
  rank = std::clamp<size_t>(rank, 1, sorted_ns.size());
  return static_cast<double>(sorted_ns[rank - 1]) / 1e6;
}

absl::StatusOr<std::vector<std::shared_ptr<grpc::Channel>>> ConnectChannels(
    const ChannelOptions& options) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  channels.reserve(options.connections);
  for (uint32_t i = 0; i < options.connections; ++i) {
    grpc::ChannelArguments args;
    // A channel arg unique per channel plus a local subchannel pool: gRPC would otherwise share
    // one subchannel (one TCP connection) between channels with equal args, and the bench must
    // reproduce N processes with N connections.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("ms_rendezvous.bench_channel_index", static_cast<int>(i));
    // Joins are not retried by the client library's channel either; retries would only add the
    // retry filter's buffering to every call.
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    // As the client library: no bandwidth-delay probing (a PING per member the daemon answers).
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    if (options.fast_reconnect) {
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
      // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the minimum CONNECT TIMEOUT
      // (default 20 s). At 50 ms, a handshake that takes longer (1,000 connections at once on a
      // busy host) is abandoned and the channel goes to TRANSIENT_FAILURE, again and again.
    }
    channels.push_back(
        grpc::CreateCustomChannel(options.server, grpc::InsecureChannelCredentials(), args));
  }
  // Kick off every connection first, then wait: connecting one by one would serialise N TCP and
  // HTTP/2 handshakes.
  for (auto& channel : channels) channel->GetState(/*try_to_connect=*/true);
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(absl::ToInt64Milliseconds(options.connect_timeout));
  for (uint32_t i = 0; i < channels.size(); ++i) {
    // Not WaitForConnected(): it keeps retrying through TRANSIENT_FAILURE until the deadline, so a
    // wrong --server would hang for the whole connect timeout instead of failing at once.
    grpc_connectivity_state state = channels[i]->GetState(/*try_to_connect=*/true);
    while (state != GRPC_CHANNEL_READY) {
      if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
        return absl::UnavailableError(absl::StrCat("channel ", i, " of ", channels.size(), " to ",
                                                   options.server,
                                                   " failed to connect; is the daemon running "
                                                   "there, and does it accept this many "
                                                   "connections?"));
      }
      if (!channels[i]->WaitForStateChange(state, deadline)) {
        return absl::UnavailableError(absl::StrCat("channel ", i, " of ", channels.size(), " to ",
                                                   options.server, " did not connect within ",
                                                   absl::FormatDuration(options.connect_timeout)));
      }
      state = channels[i]->GetState(/*try_to_connect=*/true);
    }
  }
  return channels;
}

void SessionStream::Start(v1::Rendezvous::Stub* stub, v1::SessionRequest first,
                          bool wait_for_ready) {
  ctx_.set_wait_for_ready(wait_for_ready);
  start_ns = NowNs();
  stub->async()->Session(&ctx_, this);
  {
    std::lock_guard<std::mutex> lock(mu_);
    writes_.push_back(std::move(first));
    StartWrite(&writes_.front());
  }
  StartRead(&response_);
  StartCall();
}

void SessionStream::Leave(const v1::MemberRef& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  v1::SessionRequest leave;
  *leave.mutable_leave()->mutable_member() = ref;
  writes_.push_back(std::move(leave));
  // deque::push_back keeps references to existing elements valid.
  if (writes_.size() == 1) StartWrite(&writes_.front());
}

int64_t SessionStream::Heartbeat() {
  std::lock_guard<std::mutex> lock(mu_);
  if (reads_ended_) return -1;
  v1::SessionRequest heartbeat;
  heartbeat.mutable_heartbeat();  // the session names the member, as in the client library
  const size_t queued = writes_.size();
  writes_.push_back(std::move(heartbeat));
  if (queued == 0) StartWrite(&writes_.front());
  return static_cast<int64_t>(queued);
}

void SessionStream::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ok && cb_->heartbeats_written != nullptr && writes_.front().has_heartbeat()) {
    cb_->heartbeats_written->fetch_add(1, std::memory_order_relaxed);
  }
  writes_.pop_front();
  if (!ok) {
    writes_.clear();  // the stream is ending; OnDone tells why
    return;
  }
  if (!writes_.empty()) StartWrite(&writes_.front());
}

void SessionStream::OnReadDone(bool ok) {
  if (!ok) {
    std::lock_guard<std::mutex> lock(mu_);
    reads_ended_ = true;
    return;  // OnDone follows with the status
  }
  if (response_.has_topology()) {
    if (cb_->on_topology) cb_->on_topology(this, response_.topology());
  } else if (response_.has_event()) {
    if (cb_->on_event) cb_->on_event(this, response_.event());
  }
  StartRead(&response_);
}

void SessionStream::OnDone(const grpc::Status& status) {
  if (cb_->on_done) cb_->on_done(this, status);
}

TimerThread::TimerThread() : thread_([this] { Run(); }) {}

TimerThread::~TimerThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void TimerThread::At(int64_t due_ns, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    items_.push(Item{due_ns, seq_++, std::move(fn)});
  }
  cv_.notify_all();
}

void TimerThread::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (items_.empty()) {
      cv_.wait(lock);
      continue;
    }
    int64_t now = NowNs();
    if (items_.top().due_ns > now) {
      cv_.wait_for(lock, std::chrono::nanoseconds(items_.top().due_ns - now));
      continue;
    }
    std::function<void()> fn = std::move(const_cast<Item&>(items_.top()).fn);
    items_.pop();
    lock.unlock();
    fn();
    lock.lock();
  }
}

absl::Duration JitteredBackoff(uint32_t attempt) {
  thread_local absl::BitGen gen;
  absl::Duration base = absl::Milliseconds(50);
  for (uint32_t i = 0; i < attempt && base < absl::Seconds(2); ++i) base *= 2;
  base = std::min(base, absl::Seconds(2));
  return base * absl::Uniform(gen, 0.5, 1.5);
}

RetryScheduler::RetryScheduler() : watch_thread_([this] { RunWatches(); }) {}

RetryScheduler::~RetryScheduler() {
  stopping_ = true;
  // Every watch has a deadline (its due time), so gRPC hands each back within a backoff period.
  while (watches_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  cq_.Shutdown();
  watch_thread_.join();
}

bool RetryScheduler::Fire(Pending& p, std::atomic<uint64_t>* count) {
  if (p.fired.exchange(true)) return false;  // the other trigger came first
  // Counted before the retry runs, so whatever the retry wakes already sees it counted.
  if (count != nullptr) ++*count;
  p.fn();
  return true;
}

void RetryScheduler::Schedule(grpc::Channel* channel, int64_t due_ns, std::function<void()> fn) {
  auto pending = std::make_shared<Pending>();
  pending->fn = std::move(fn);
  timer_.At(due_ns, [pending] { Fire(*pending); });
  if (channel == nullptr) return;
  // try_to_connect: an IDLE channel (its connection just closed) starts connecting now, as
  // WaitBeforeRetry's GetState(true) does.
  const grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  if (state == GRPC_CHANNEL_READY) return;  // connected: the daemon refused; full backoff
  Arm(new Watch{std::move(pending), channel, due_ns}, state);
}

void RetryScheduler::Arm(Watch* w, grpc_connectivity_state last) {
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::nanoseconds(std::max<int64_t>(0, w->due_ns - NowNs()));
  ++watches_;
  w->channel->NotifyOnStateChange(last, deadline, &cq_, w);
}

void RetryScheduler::RunWatches() {
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) {
    std::unique_ptr<Watch> w(static_cast<Watch*>(tag));
    --watches_;
    // !ok: the deadline passed without a change (the timer runs the retry).
    if (!ok || w->pending->fired.load() || stopping_) continue;
    const grpc_connectivity_state state = w->channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) {
      Fire(*w->pending, &woken_by_ready_);
    } else if (NowNs() < w->due_ns) {
      Arm(w.release(), state);  // CONNECTING, or failed again: keep watching until due
    }
  }
}

}  // namespace ms_rendezvous::bench
