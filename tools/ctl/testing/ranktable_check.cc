// Reads an HCCL rank table (a file, or stdin with "-") with ParseHcclRankTable and prints it in a
// normalized line form the e2e test compares exactly:
//   servers 2 ranks 8
//   server 0 10.0.0.1 reserve
//   rank 0 server 10.0.0.1 device_id 0 device_ip 192.168.100.1
// Exit 0 when the table parses, 1 (error on stderr) when it does not, 2 on usage errors.
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "ms_rendezvous/topology_export.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: ranktable_check FILE|-\n";
    return 2;
  }
  std::string json;
  if (std::string(argv[1]) == "-") {
    json.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) {
      std::cerr << "ranktable_check: cannot open " << argv[1] << "\n";
      return 2;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    json = buf.str();
  }
  absl::StatusOr<ms_rendezvous::ParsedRankTable> table = ms_rendezvous::ParseHcclRankTable(json);
  if (!table.ok()) {
    std::cerr << "ranktable_check: " << table.status().message() << "\n";
    return 1;
  }
  std::cout << "servers " << table->servers.size() << " ranks " << table->rank_size << "\n";
  for (size_t i = 0; i < table->servers.size(); ++i) {
    const auto& server = table->servers[i];
    std::cout << "server " << i << " " << server.server_id << " " << server.host_nic_ip << "\n";
    for (const auto& d : server.devices) {
      std::cout << "rank " << d.rank_id << " server " << server.server_id << " device_id "
                << d.device_id << " device_ip " << d.device_ip << "\n";
    }
  }
  return 0;
}
