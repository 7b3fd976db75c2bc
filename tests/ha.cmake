# High availability on etcd, end to end (label `etcd`): a 3-member etcd cluster, two
# ms-rendezvousd with --store=etcd, probes and an in-process client library member. Included
# from tests/CMakeLists.txt; skips, saying why, when /usr/bin/etcd is missing.
add_executable(ha_e2e_test ${CMAKE_CURRENT_LIST_DIR}/etcd/ha_e2e_test.cc)
target_link_libraries(ha_e2e_test PRIVATE msr_test_util GTest::gtest_main ms_rendezvous
                                          ms_rendezvous_etcd_client ms_rendezvous_proto
                                          gRPC::grpc++ absl::strings absl::time)
target_compile_definitions(ha_e2e_test PRIVATE MSR_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}"
                                               MSR_ETCD_BIN="/usr/bin/etcd")
set_target_properties(ha_e2e_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_dependencies(ha_e2e_test ms-rendezvousd ms-rendezvous-probe)
gtest_discover_tests(ha_e2e_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "etcd;e2e" TIMEOUT 150)

# LeaderElection in process against a real cluster: one leader, hand-over, takeover within the
# lease TTL, and the fence that keeps a deposed leader from writing.
add_executable(leader_election_test ${CMAKE_CURRENT_LIST_DIR}/etcd/leader_election_test.cc)
target_link_libraries(leader_election_test PRIVATE msr_test_util GTest::gtest_main ms_rendezvous_ha
                                                   absl::synchronization absl::strings absl::time)
target_compile_definitions(leader_election_test PRIVATE MSR_ETCD_BIN="/usr/bin/etcd")
set_target_properties(leader_election_test PROPERTIES
                      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
gtest_discover_tests(leader_election_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS etcd TIMEOUT 60)

# The failover benchmark itself stays runnable: 20 members, one leader kill, ok:true.
add_test(NAME failover_bench_smoke
         COMMAND ${CMAKE_RUNTIME_OUTPUT_DIRECTORY}/ms-rendezvous-failover-bench --members 20)
set_tests_properties(failover_bench_smoke PROPERTIES LABELS "etcd;tools" TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "\"ok\":true")
