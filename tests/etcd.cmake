# EtcdStateStore and EtcdClient tests (label `etcd`). Included from tests/CMakeLists.txt after
# msr_gtest() is defined. Each test starts its own etcd cluster from /usr/bin/etcd on free
# loopback ports (tests/etcd/etcd_cluster.h) and skips, saying why, when etcd is not installed
# (scripts/bootstrap.sh installs etcd-server). Each test stays under 60 s.
function(msr_etcd_test name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE msr_test_util GTest::gtest_main ms_rendezvous_etcd_client
                                        absl::synchronization absl::time absl::strings)
  target_compile_definitions(${name} PRIVATE MSR_ETCD_BIN="/usr/bin/etcd")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS etcd TIMEOUT 60)
endfunction()

# The client over the hand-written etcd protos: KV, Txn, paged Range, failover, leases, watches.
msr_etcd_test(etcd_client_test ${CMAKE_CURRENT_LIST_DIR}/etcd/etcd_client_test.cc)
# TxnPlan and the key layout: no etcd needed.
msr_etcd_test(etcd_txn_plan_test ${CMAKE_CURRENT_LIST_DIR}/etcd/txn_plan_test.cc)
target_link_libraries(etcd_txn_plan_test PRIVATE ms_rendezvous_etcd_store)
# The store: round trips, order, deletes, journal, member loss, quorum loss, fencing, restarts.
msr_etcd_test(etcd_state_store_test ${CMAKE_CURRENT_LIST_DIR}/etcd/etcd_state_store_test.cc)
target_link_libraries(etcd_state_store_test PRIVATE ms_rendezvous_etcd_store)
# Figures: commits/s on 1 and 3 members, Load of 10,000 members (printed, loosely bounded).
msr_etcd_test(etcd_state_store_perf_test
              ${CMAKE_CURRENT_LIST_DIR}/etcd/etcd_state_store_perf_test.cc)
target_link_libraries(etcd_state_store_perf_test PRIVATE ms_rendezvous_etcd_store)
