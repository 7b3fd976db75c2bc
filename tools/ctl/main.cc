// ms-rendezvousctl: inspect a running ms-rendezvousd over gRPC (RendezvousAdmin + Health).
//
//   ms-rendezvousctl [--server HOST:PORT] [--json] [--timeout-s S] COMMAND [ARGS]
//   ms-rendezvousctl [--role worker|pserver] [--allow-missing-device-ip] ranktable|hostfile ID
//   ms-rendezvousctl [--admin-token-file FILE] create|abort|delete ID ...
//
// Exit codes: 0 success, 1 RPC error (printed as "ms-rendezvousctl: CODE: message") or, for
// `health`, a daemon that is not SERVING; 2 usage error.
//
// The tool is single-threaded and uses the synchronous stubs: it issues a handful of calls and
// then exits, so the callback API would add complexity without saving anything.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/src/channel_credentials.h"
#include "core/status_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "ms_rendezvous/client.h"
#include "ms_rendezvous/options.h"
#include "ms_rendezvous/topology_export.h"
#include "tools/common/grpc_status.h"
#include "tools/common/json.h"
#include "tools/common/server_address.h"
#include "tools/ctl/render.h"

namespace ms_rendezvous::ctl {
namespace {

namespace health = ::grpc::health::v1;

constexpr char kUsage[] =
    "usage: ms-rendezvousctl [--server HOST:PORT] [--json] [--timeout-s S] COMMAND\n"
    "       ms-rendezvousctl [--role worker|pserver] [--allow-missing-device-ip] ranktable ID\n"
    "       ms-rendezvousctl [--role worker|pserver] hostfile ID\n"
    "\n"
    "commands:\n"
    "  jobs          list the jobs the daemon knows\n"
    "  job ID        one job: state, node timeout, recovery mode, suspect/dead counts, expected\n"
    "                vs joined per role, missing ranks, hosts, first members\n"
    "  members ID    every member of a job (paged from the daemon): state (waiting, active =\n"
    "                alive, suspect, dead, left, failed), connected, last heard from,\n"
    "                incarnation, reason (dead/failed)\n"
    "  watch ID      stream a job's events, one line each, until the stream ends (failures\n"
    "                list the dead members)\n"
    "  health        daemon serving status (exit 0 when SERVING, 1 otherwise); with several\n"
    "                daemons on etcd also its role (leader, standby), the leader's address\n"
    "                and the store\n"
    "  ranktable ID  HCCL rank table v1.0 (JSON, every value a string) of a complete job, for\n"
    "                RANK_TABLE_FILE: servers = host addresses in node order, device_id =\n"
    "                DEVICE_ID (else the local rank), device_ip = MS_DEVICE_IP. Fails when the\n"
    "                job is not complete, a member reported no MS_DEVICE_IP (unless\n"
    "                --allow-missing-device-ip: \"0.0.0.0\" is written) or a host's ranks are\n"
    "                not contiguous\n"
    "  hostfile ID   OpenMPI hostfile of a complete job: \"HOST slots=N\" per host, node order\n"
    "  create ID --workers N [--servers N] [--topo-timeout-s S] [--node-timeout-s S]\n"
    "            [--recovery] [--job-token-file FILE]\n"
    "                create a job before its members start (admin token), fixing its spec\n"
    "                and the token its members must present (MS_JOB_TOKEN)\n"
    "  abort ID [--reason TEXT]  fail a live job; every member is told (admin token)\n"
    "  delete ID     forget a finished or failed job now (admin token)\n"
    "  kv ID [--prefix P]  a job's key/value store, key and value C-escaped (admin token:\n"
    "                values such as NCCL ids are secrets)\n"
    "\n"
    "options:\n"
    "  --server HOST:PORT  daemon address (default: $MS_SCHED_HOST:$MS_SCHED_PORT, else\n"
    "                      127.0.0.1:8118)\n"
    "  --json              print one JSON document (watch: one JSON object per line)\n"
    "  --timeout-s S       deadline of each unary call in seconds (default 10)\n"
    "  --role worker|pserver  ranktable, hostfile: the members listed (default worker)\n"
    "  --allow-missing-device-ip  ranktable: write device_ip \"0.0.0.0\" for members without\n"
    "                      MS_DEVICE_IP instead of failing (CPU/simulation only: HCCL needs\n"
    "                      real device addresses across servers)\n"
    "  --admin-token-file FILE  admin token for create/abort/delete and a protected status\n"
    "                      API (default: $MS_ADMIN_TOKEN); MS_JOB_TOKEN is sent too, so a\n"
    "                      job's own token reads that job's status\n"
    "  --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --tls-server-name NAME\n"
    "                      TLS to the daemon (default: $MS_TLS_CA, $MS_TLS_CERT, $MS_TLS_KEY,\n"
    "                      $MS_TLS_SERVER_NAME)\n";

struct Options {
  std::string server;
  bool json = false;
  double timeout_s = 10;
  Role role = Role::kWorker;  // ranktable, hostfile
  bool allow_missing_device_ip = false;
  std::vector<std::string> args;  // command and its operands
  ClientOptions tls;              // tls_* fields only
  std::string admin_token;        // --admin-token-file / MS_ADMIN_TOKEN
  std::string job_token;          // MS_JOB_TOKEN (per-job reads of a protected status API)
  // create
  uint32_t workers = 0, servers = 0;
  int64_t topo_timeout_ms = 0, node_timeout_ms = 0;
  bool recovery = false;
  std::string new_job_token;  // --job-token-file
  std::string reason;         // abort
  std::string prefix;         // kv
};

// The first line of `path`, trimmed: tokens live in files so they stay out of `ps`.
absl::StatusOr<std::string> ReadTokenFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", path, "\" cannot be read: ", std::strerror(errno)));
  }
  std::string token(absl::StripAsciiWhitespace(line));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " \"", path, "\": the first line is empty"));
  }
  return token;
}

std::string EnvOr(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// Parses the command line; flags may appear before or after the command ("ctl health --json").
// Every error is a usage error (printed with the usage text, exit 2).
absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options options;
  bool server_set = false;
  bool only_operands = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (only_operands || arg.empty() || arg[0] != '-' || arg == "-") {
      options.args.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      only_operands = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg == "--json") {
      options.json = true;
      continue;
    }
    if (arg == "--allow-missing-device-ip") {
      options.allow_missing_device_ip = true;
      continue;
    }
    if (arg == "--recovery") {
      options.recovery = true;
      continue;
    }
    // --name VALUE or --name=VALUE
    std::string name(arg), value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    }
    static const absl::flat_hash_set<std::string> kValued = {
        "--server",   "--timeout-s",       "--role",           "--tls-ca",
        "--tls-cert", "--tls-key",         "--tls-server-name", "--admin-token-file",
        "--workers",  "--servers",         "--topo-timeout-s", "--node-timeout-s",
        "--job-token-file", "--reason", "--prefix"};
    if (!kValued.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", arg));
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      value = argv[++i];
    }
    if (name == "--role") {
      if (value == "worker" || value == "MS_WORKER") {
        options.role = Role::kWorker;
      } else if (value == "pserver" || value == "MS_PSERVER" || value == "server" ||
                 value == "MS_SERVER") {
        options.role = Role::kPServer;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("--role \"", value, "\" is not a role: expected worker or pserver"));
      }
    } else if (name == "--server") {
      if (value.empty()) {
        return absl::InvalidArgumentError("--server needs HOST:PORT");
      }
      options.server = value;
      server_set = true;
    } else if (name == "--tls-ca") {
      options.tls.tls_ca_file = value;
    } else if (name == "--tls-cert") {
      options.tls.tls_cert_file = value;
    } else if (name == "--tls-key") {
      options.tls.tls_key_file = value;
    } else if (name == "--tls-server-name") {
      options.tls.tls_server_name = value;
    } else if (name == "--admin-token-file") {
      absl::StatusOr<std::string> token = ReadTokenFile(name, value);
      if (!token.ok()) return token.status();
      options.admin_token = *token;
    } else if (name == "--job-token-file") {
      absl::StatusOr<std::string> token = ReadTokenFile(name, value);
      if (!token.ok()) return token.status();
      options.new_job_token = *token;
    } else if (name == "--reason") {
      options.reason = value;
    } else if (name == "--prefix") {
      options.prefix = value;
    } else if (name == "--workers" || name == "--servers") {
      uint32_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || n > 1000000 || (name == "--workers" && n == 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, " \"", value, "\" must be an integer in ", name == "--workers" ? "1" : "0",
            "..1000000"));
      }
      (name == "--workers" ? options.workers : options.servers) = n;
    } else if (name == "--topo-timeout-s" || name == "--node-timeout-s") {
      double seconds = 0;
      if (!absl::SimpleAtod(value, &seconds) || !std::isfinite(seconds) || seconds == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, " \"", value, "\" must be a number of seconds (> 0; negative = no timeout)"));
      }
      const int64_t ms = seconds < 0 ? -1 : static_cast<int64_t>(seconds * 1000);
      (name == "--topo-timeout-s" ? options.topo_timeout_ms : options.node_timeout_ms) = ms;
    } else if (!absl::SimpleAtod(value, &options.timeout_s) || !(options.timeout_s > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--timeout-s \"", value, "\" is not a positive number"));
    }
  }
  if (options.admin_token.empty()) options.admin_token = EnvOr("MS_ADMIN_TOKEN");
  options.job_token = EnvOr("MS_JOB_TOKEN");
  if (options.tls.tls_ca_file.empty()) options.tls.tls_ca_file = EnvOr("MS_TLS_CA");
  if (options.tls.tls_cert_file.empty()) options.tls.tls_cert_file = EnvOr("MS_TLS_CERT");
  if (options.tls.tls_key_file.empty()) options.tls.tls_key_file = EnvOr("MS_TLS_KEY");
  if (options.tls.tls_server_name.empty()) {
    options.tls.tls_server_name = EnvOr("MS_TLS_SERVER_NAME");
  }
  if (options.tls.tls_cert_file.empty() != options.tls.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key (MS_TLS_CERT, MS_TLS_KEY) must be given together");
  }
  if (!server_set) {
    absl::StatusOr<std::string> server = tools::ServerFromEnv();
    if (!server.ok()) return server.status();
    options.server = *server;
  }
  return options;
}

class Ctl {
 public:
  Ctl(const Options& options, std::shared_ptr<grpc::Channel> channel)
      : options_(options),
        channel_(std::move(channel)),
        admin_(v1::RendezvousAdmin::NewStub(channel_)),
        health_(health::Health::NewStub(channel_)) {}

  static absl::StatusOr<std::shared_ptr<grpc::Channel>> Dial(const Options& options) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        ChannelCredentialsFor(options.tls);
    if (!credentials.ok()) return credentials.status();
    grpc::ChannelArguments args;
    AddTlsChannelArgs(options.tls, &args);
    return grpc::CreateCustomChannel(options.server, *credentials, args);
  }

  absl::StatusOr<int> Create(const std::string& job_id) {
    v1::CreateJobRequest request;
    request.set_job_id(job_id);
    request.set_worker_num(options_.workers);
    request.set_server_num(options_.servers);
    request.set_topo_timeout_ms(options_.topo_timeout_ms);
    request.set_node_timeout_ms(options_.node_timeout_ms);
    request.set_enable_recovery(options_.recovery);
    request.set_job_token(options_.new_job_token);
    v1::CreateJobResponse response;
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    RETURN_IF_ERROR(tools::FromGrpc(admin_->CreateJob(&ctx, request, &response)));
    return PrintJob(response.job(), absl::StrCat("created job ", job_id));
  }

  absl::StatusOr<int> Abort(const std::string& job_id) {
    v1::AbortJobRequest request;
    request.set_job_id(job_id);
    request.set_reason(options_.reason);
    v1::AbortJobResponse response;
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    RETURN_IF_ERROR(tools::FromGrpc(admin_->AbortJob(&ctx, request, &response)));
    return PrintJob(response.job(), absl::StrCat("aborted job ", job_id));
  }

  absl::StatusOr<int> Kv(const std::string& job_id) {
    v1::ListJobKeysRequest request;
    request.set_job_id(job_id);
    request.set_prefix(options_.prefix);
    request.set_page_size(1000);
    std::vector<std::pair<std::string, std::string>> entries;
    do {
      v1::ListJobKeysResponse response;
      grpc::ClientContext ctx;
      SetDeadline(ctx);
      RETURN_IF_ERROR(tools::FromGrpc(admin_->ListJobKeys(&ctx, request, &response)));
      for (const auto& e : response.entries()) entries.emplace_back(e.key(), e.value());
      request.set_page_token(response.next_page_token());
    } while (!request.page_token().empty());
    if (options_.json) {
      tools::JsonWriter w;
      w.BeginObject().Key("job_id").String(job_id).Key("entries").BeginArray();
      for (const auto& [k, v] : entries) {
        w.BeginObject().Key("key").String(absl::CHexEscape(k));
        w.Key("value").String(absl::CHexEscape(v)).EndObject();
      }
      w.EndArray().EndObject();
      PrintLine(w.str());
    } else if (entries.empty()) {
      PrintLine("no keys");
    } else {
      for (const auto& [k, v] : entries) {
        PrintLine(absl::StrCat(absl::CHexEscape(k), "\t", absl::CHexEscape(v)));
      }
    }
    return 0;
  }

  absl::StatusOr<int> Delete(const std::string& job_id) {
    v1::DeleteJobRequest request;
    request.set_job_id(job_id);
    v1::DeleteJobResponse response;
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    RETURN_IF_ERROR(tools::FromGrpc(admin_->DeleteJob(&ctx, request, &response)));
    if (options_.json) {
      tools::JsonWriter w;
      w.BeginObject().Key("deleted").String(job_id).EndObject();
      PrintLine(w.str());
    } else {
      PrintLine(absl::StrCat("deleted job ", job_id));
    }
    return 0;
  }

  // Each returns the exit code, or an RPC error (exit 1).
  absl::StatusOr<int> Jobs() {
    google::protobuf::RepeatedPtrField<v1::JobSummary> jobs;
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    do {
      v1::ListJobsResponse response;
      grpc::ClientContext ctx;
      SetDeadline(ctx);
      RETURN_IF_ERROR(tools::FromGrpc(admin_->ListJobs(&ctx, request, &response)));
      jobs.MergeFrom(response.jobs());
      request.set_page_token(response.next_page_token());
    } while (!request.page_token().empty());
    if (options_.json) {
      tools::JsonWriter w;
      w.BeginObject().Key("jobs").BeginArray();
      for (const auto& job : jobs) WriteJobSummary(job, w);
      w.EndArray().EndObject();
      PrintLine(w.str());
    } else {
      std::fputs(RenderJobsTable(jobs).c_str(), stdout);
    }
    return 0;
  }

  absl::StatusOr<int> Job(const std::string& job_id) {
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    // A page of members is enough to eyeball a job; `members ID` lists them all.
    request.set_max_members(kJobMembersShown);
    v1::GetJobResponse response;
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    RETURN_IF_ERROR(tools::FromGrpc(admin_->GetJob(&ctx, request, &response)));
    if (options_.json) {
      tools::JsonWriter w;
      w.BeginObject().Key("job");
      WriteJobSummary(response.job(), w);
      w.Key("members").BeginArray();
      for (const auto& m : response.members()) WriteMember(m, w);
      w.EndArray();
      w.Key("more_members").Bool(!response.next_page_token().empty());
      w.EndObject();
      PrintLine(w.str());
    } else {
      std::fputs(RenderJob(response).c_str(), stdout);
    }
    return 0;
  }

  absl::StatusOr<int> Members(const std::string& job_id) {
    google::protobuf::RepeatedPtrField<v1::MemberInfo> members;
    v1::ListMembersRequest request;
    request.set_job_id(job_id);
    request.set_page_size(kMembersPageSize);
    do {
      v1::ListMembersResponse response;
      grpc::ClientContext ctx;
      SetDeadline(ctx);
      RETURN_IF_ERROR(tools::FromGrpc(admin_->ListMembers(&ctx, request, &response)));
      if (members.empty()) members.Reserve(static_cast<int>(response.total()));
      // Swap the elements over instead of copying them: a 100k-member job is 100 pages.
      for (auto& m : *response.mutable_members()) members.Add()->Swap(&m);
      request.set_page_token(response.next_page_token());
    } while (!request.page_token().empty());
    if (options_.json) {
      tools::JsonWriter w;
      w.BeginObject().Key("job_id").String(job_id).Key("members").BeginArray();
      for (const auto& m : members) WriteMember(m, w);
      w.EndArray().EndObject();
      PrintLine(w.str());
    } else if (members.empty()) {
      std::fputs("no members\n", stdout);
    } else {
      std::fputs(RenderMembersTable(members).c_str(), stdout);
    }
    return 0;
  }

  // Streams until the daemon ends the stream. No deadline: watching is open-ended by design.
  absl::StatusOr<int> Watch(const std::string& job_id) {
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    grpc::ClientContext ctx;
    AddCredentials(ctx);
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader = admin_->WatchJob(&ctx, request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      if (options_.json) {
        tools::JsonWriter w;
        WriteEvent(event, w);
        PrintLine(w.str());
      } else {
        PrintLine(RenderEventLine(event));
      }
      // Line by line even into a pipe: watch output is consumed while it happens.
      std::fflush(stdout);
    }
    RETURN_IF_ERROR(tools::FromGrpc(reader->Finish()));
    return 0;
  }

  // `ranktable ID` and `hostfile ID`: the member table of a complete job, exported.
  absl::StatusOr<int> Export(const std::string& job_id, bool rank_table) {
    const char* what = rank_table ? "a rank table" : "a hostfile";
    v1::GetJobRequest job_request;
    job_request.set_job_id(job_id);
    job_request.set_max_members(0);
    v1::GetJobResponse job;
    {
      grpc::ClientContext ctx;
      SetDeadline(ctx);
      RETURN_IF_ERROR(tools::FromGrpc(admin_->GetJob(&ctx, job_request, &job)));
    }
    const v1::JobSummary& summary = job.job();
    switch (summary.state()) {
      case v1::JOB_STATE_COMPLETE:
      case v1::JOB_STATE_DEGRADED:  // a dead member's rank is held for it: the layout stands
      case v1::JOB_STATE_FINISHED:
        break;
      case v1::JOB_STATE_FORMING: {
        uint32_t joined = 0, expected = 0;
        for (const v1::RoleSummary& role : summary.roles()) {
          joined += role.joined();
          expected += role.expected();
        }
        return absl::FailedPreconditionError(
            absl::StrCat("job '", job_id, "' is forming: ", joined, " of ", expected,
                         " joined; ", what, " needs a complete job"));
      }
      case v1::JOB_STATE_FAILED:
        return absl::FailedPreconditionError(absl::StrCat(
            "job '", job_id, "' failed",
            summary.failure_reason().empty() ? "" : absl::StrCat(" (", summary.failure_reason(), ")"),
            "; ", what, " needs a complete job"));
      default:
        return absl::FailedPreconditionError(
            absl::StrCat("job '", job_id, "' is in an unknown state; ", what,
                         " needs a complete job"));
    }
    std::vector<MemberInfo> members;
    v1::ListMembersRequest request;
    request.set_job_id(job_id);
    request.set_page_size(kMembersPageSize);
    do {
      v1::ListMembersResponse response;
      grpc::ClientContext ctx;
      SetDeadline(ctx);
      RETURN_IF_ERROR(tools::FromGrpc(admin_->ListMembers(&ctx, request, &response)));
      if (members.empty()) members.reserve(response.total());
      for (const v1::MemberInfo& m : response.members()) members.push_back(ToMemberInfo(m));
      request.set_page_token(response.next_page_token());
    } while (!request.page_token().empty());
    if (!rank_table) {
      std::string hostfile = OpenMpiHostfile(members, options_.role);
      if (hostfile.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("job '", job_id, "' has no ", RoleName(options_.role), " members"));
      }
      std::fputs(hostfile.c_str(), stdout);
      return 0;
    }
    RankTableOptions table_options;
    table_options.require_device_ip = !options_.allow_missing_device_ip;
    absl::StatusOr<std::string> table = HcclRankTableJson(members, options_.role, table_options);
    if (!table.ok()) {
      return absl::Status(table.status().code(),
                          absl::StrCat("job '", job_id, "': ", table.status().message()));
    }
    std::fputs(table->c_str(), stdout);
    return 0;
  }

  absl::StatusOr<int> Health() {
    health::HealthCheckRequest request;  // service "": the daemon as a whole
    health::HealthCheckResponse response;
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    RETURN_IF_ERROR(tools::FromGrpc(health_->Check(&ctx, request, &response)));
    const std::string& status = health::HealthCheckResponse::ServingStatus_Name(response.status());
    // Which daemon answered and who leads (several daemons on etcd). Older daemons do not know
    // the call: the status alone is printed then.
    v1::ServerInfo info;
    grpc::ClientContext info_ctx;
    SetDeadline(info_ctx);
    // A single daemon (memory or sqlite) prints the status alone, as before.
    const bool has_info =
        admin_->GetServerInfo(&info_ctx, v1::GetServerInfoRequest(), &info).ok() &&
        info.role() != "single";
    if (options_.json) {
      tools::JsonWriter w;
      w.BeginObject().Key("status").String(status);
      if (has_info) {
        w.Key("role").String(info.role()).Key("leader").String(info.leader());
        w.Key("store").String(info.store());
      }
      w.EndObject();
      PrintLine(w.str());
    } else {
      PrintLine(absl::StrCat("status: ", status));
      if (has_info) {
        PrintLine(absl::StrCat("role: ", info.role()));
        PrintLine(absl::StrCat("leader: ", info.leader().empty() ? "(none)" : info.leader()));
        PrintLine(absl::StrCat("store: ", info.store()));
      }
    }
    return response.status() == health::HealthCheckResponse::SERVING ? 0 : 1;
  }

 private:
  static constexpr uint32_t kJobMembersShown = 20;
  static constexpr uint32_t kMembersPageSize = 1000;

  // The fields the exporters read (topology_export.h works on the client library's MemberInfo).
  static MemberInfo ToMemberInfo(const v1::MemberInfo& m) {
    MemberInfo out;
    out.node_id = m.node_id();
    out.role = m.role() == v1::ROLE_PSERVER ? Role::kPServer : Role::kWorker;
    if (m.has_rank()) out.rank = m.rank();
    out.local_rank = m.local_rank();
    out.node_rank = m.node_rank();
    out.host = m.host();
    out.host_name = m.host_name();
    out.device_id = m.device_id();
    out.device_ip = m.device_ip();
    out.incarnation = m.incarnation();
    return out;
  }

  int PrintJob(const v1::JobSummary& job, const std::string& what) {
    if (options_.json) {
      tools::JsonWriter w;
      w.BeginObject().Key("job");
      WriteJobSummary(job, w);
      w.EndObject();
      PrintLine(w.str());
    } else {
      PrintLine(absl::StrCat(what, " (", v1::JobState_Name(job.state()), ")"));
    }
    return 0;
  }

  // Deadline and credentials of every call.
  void SetDeadline(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(options_.timeout_s * 1e6)));
    AddCredentials(ctx);
  }
  void AddCredentials(grpc::ClientContext& ctx) const {
    if (!options_.admin_token.empty()) {
      ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.admin_token));
    }
    if (!options_.job_token.empty()) ctx.AddMetadata("x-ms-job-token", options_.job_token);
  }
  static void PrintLine(const std::string& line) {
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
  }

  const Options& options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RendezvousAdmin::Stub> admin_;
  std::unique_ptr<health::Health::Stub> health_;
};

int Usage(const std::string& message) {
  std::fprintf(stderr, "ms-rendezvousctl: %s\n%s", message.c_str(), kUsage);
  return 2;
}

int Main(int argc, char** argv) {
  absl::StatusOr<Options> options = ParseArgs(argc, argv);
  if (!options.ok()) return Usage(std::string(options.status().message()));
  if (options->args.empty()) return Usage("missing COMMAND");
  const std::string& command = options->args[0];
  size_t operands = options->args.size() - 1;
  bool takes_job = command == "job" || command == "members" || command == "watch" ||
                   command == "ranktable" || command == "hostfile" || command == "create" ||
                   command == "abort" || command == "delete" || command == "kv";
  if (takes_job) {
    if (operands != 1) return Usage(absl::StrCat(command, " takes exactly one job ID"));
  } else if (command == "jobs" || command == "health") {
    if (operands != 0) return Usage(absl::StrCat(command, " takes no arguments"));
  } else {
    return Usage(absl::StrCat("unknown command \"", command, "\""));
  }
  if (command == "create" && options->workers == 0) {
    return Usage("create needs --workers N (MS_WORKER_NUM of the job)");
  }

  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = Ctl::Dial(*options);
  if (!channel.ok()) return Usage(std::string(channel.status().message()));
  Ctl ctl(*options, *std::move(channel));
  absl::StatusOr<int> result;
  if (command == "create") {
    result = ctl.Create(options->args[1]);
  } else if (command == "abort") {
    result = ctl.Abort(options->args[1]);
  } else if (command == "delete") {
    result = ctl.Delete(options->args[1]);
  } else if (command == "kv") {
    result = ctl.Kv(options->args[1]);
  } else if (command == "jobs") {
    result = ctl.Jobs();
  } else if (command == "job") {
    result = ctl.Job(options->args[1]);
  } else if (command == "members") {
    result = ctl.Members(options->args[1]);
  } else if (command == "watch") {
    result = ctl.Watch(options->args[1]);
  } else if (command == "ranktable" || command == "hostfile") {
    result = ctl.Export(options->args[1], command == "ranktable");
  } else {
    result = ctl.Health();
  }
  std::fflush(stdout);
  if (!result.ok()) {
    std::fprintf(stderr, "ms-rendezvousctl: %s\n", tools::FormatStatus(result.status()).c_str());
    return 1;
  }
  return *result;
}

}  // namespace
}  // namespace ms_rendezvous::ctl

int main(int argc, char** argv) { return ms_rendezvous::ctl::Main(argc, argv); }
