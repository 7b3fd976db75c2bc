// RetryScheduler (tools/bench/bench_util.h): a member's next resume attempt runs once, at the end
// of its backoff or as soon as its channel is READY, whichever is first, as the client library's
// WaitBeforeRetry does. Real channels against a gRPC server on 127.0.0.1 (started late, to play
// a restarted daemon).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "test_util.h"
#include "tools/bench/bench_util.h"

namespace ms_rendezvous::bench {
namespace {

using ::ms_rendezvous::testing::FreePort;

// A server whose Rendezvous methods are all unimplemented (BuildAndStart refuses one without a
// service): enough for a channel to become READY.
std::unique_ptr<grpc::Server> StartServer(int port) {
  static v1::Rendezvous::Service* const service = new v1::Rendezvous::Service();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials());
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

// The bench's reconnect settings (ConnectChannels with fast_reconnect): gRPC retries the
// connection on a 50 ms..2 s backoff of its own.
std::shared_ptr<grpc::Channel> FastReconnectChannel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

int64_t NsAfter(absl::Duration d) { return NowNs() + absl::ToInt64Nanoseconds(d); }

TEST(RetrySchedulerTest, NoChannel_RunsOnceAtTheDueTime) {
  RetryScheduler retry;
  std::atomic<int> runs{0};
  absl::Notification done;
  const absl::Time start = absl::Now();
  retry.Schedule(nullptr, NsAfter(absl::Milliseconds(200)), [&] {
    ++runs;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(195));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(retry.woken_by_ready(), 0u);
}

// The daemon is down when the wait starts and comes back 300 ms later: the retry runs once the
// channel is READY, long before its (here deliberately long) backoff ends, and only once.
TEST(RetrySchedulerTest, DaemonBackDuringTheBackoff_RunsAsSoonAsTheChannelIsReady) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  std::shared_ptr<grpc::Channel> channel = FastReconnectChannel(port);
  std::atomic<int> runs{0};
  absl::Notification done;
  absl::Time ran_at;
  std::unique_ptr<grpc::Server> server;
  {
    RetryScheduler retry;
    retry.Schedule(channel.get(), NsAfter(absl::Seconds(20)), [&] {
      ran_at = absl::Now();
      ++runs;
      done.Notify();
    });
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_FALSE(done.HasBeenNotified()) << "ran while nothing listened";
    server = StartServer(port);
    ASSERT_NE(server, nullptr);
    const absl::Time up = absl::Now();
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)))
        << "not run within 10 s of the server coming up";
    // gRPC's own reconnect backoff is 50 ms growing to 2 s: well under 20 s.
    EXPECT_LT(ran_at - up, absl::Seconds(5));
    EXPECT_EQ(retry.woken_by_ready(), 1u);
  }  // the scheduler is gone: its timer never runs the closure a second time
  EXPECT_EQ(runs.load(), 1);
  server->Shutdown(std::chrono::system_clock::now());
}

// A channel already READY when the wait starts: the daemon itself refused (e.g. draining), so
// the retry waits out its backoff instead of hammering the daemon at once.
TEST(RetrySchedulerTest, ChannelAlreadyReady_WaitsOutTheBackoff) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  std::unique_ptr<grpc::Server> server = StartServer(port);
  ASSERT_NE(server, nullptr);
  std::shared_ptr<grpc::Channel> channel = FastReconnectChannel(port);
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                        std::chrono::seconds(10)));
  RetryScheduler retry;
  std::atomic<int> runs{0};
  absl::Notification done;
  const absl::Time start = absl::Now();
  retry.Schedule(channel.get(), NsAfter(absl::Milliseconds(300)), [&] {
    ++runs;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(295));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(retry.woken_by_ready(), 0u);
  server->Shutdown(std::chrono::system_clock::now());
}

// Nothing ever listens: the retry runs at its due time (the watch gives up with it).
TEST(RetrySchedulerTest, DaemonStaysDown_RunsOnceAtTheDueTime) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  std::shared_ptr<grpc::Channel> channel = FastReconnectChannel(port);
  RetryScheduler retry;
  std::atomic<int> runs{0};
  absl::Notification done;
  const absl::Time start = absl::Now();
  retry.Schedule(channel.get(), NsAfter(absl::Milliseconds(400)), [&] {
    ++runs;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(395));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(retry.woken_by_ready(), 0u);
}

}  // namespace
}  // namespace ms_rendezvous::bench
