# Tests of the command-line tools (ms-rendezvousctl, ms-rendezvous-bench) against a real
# ms-rendezvousd process on a free port. Included from tests/CMakeLists.txt.

# The repository root, independent of which project includes this file.
get_filename_component(MSR_TOOLS_SRC ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)

# Joins members with raw Join RPCs so the ctl test can inspect a job that is still forming. Kept
# out of bin/: it is not a product tool.
add_executable(ctl_test_join_helper ${MSR_TOOLS_SRC}/tools/ctl/testing/join_helper.cc)
target_link_libraries(ctl_test_join_helper PRIVATE ms_rendezvous_proto absl::synchronization
                                                   absl::strings absl::status)
set_target_properties(ctl_test_join_helper PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                      ${CMAKE_BINARY_DIR}/tests)

# ms-rendezvousd and ms-rendezvousctl both land in build/bin (the ctl's directory).
add_test(NAME tools_ctl_output
         COMMAND bash ${MSR_TOOLS_SRC}/tools/ctl/testing/ctl_test.sh
                 $<TARGET_FILE_DIR:ms-rendezvousctl> $<TARGET_FILE:ctl_test_join_helper>)
add_test(NAME tools_bench_smoke
         COMMAND bash ${MSR_TOOLS_SRC}/tools/bench/testing/bench_smoke.sh
                 $<TARGET_FILE:ms-rendezvous-bench>)
set_tests_properties(tools_ctl_output tools_bench_smoke PROPERTIES TIMEOUT 120 LABELS "e2e;tools")

# Topology export e2e: 8 probes on 2 simulated hosts, `ms-rendezvousctl ranktable|hostfile` and
# `ms-rendezvous-probe --env`; the rank table is read back by ParseHcclRankTable (this checker).
add_executable(export_test_ranktable_check ${MSR_TOOLS_SRC}/tools/ctl/testing/ranktable_check.cc)
target_link_libraries(export_test_ranktable_check PRIVATE ms_rendezvous)
set_target_properties(export_test_ranktable_check PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                             ${CMAKE_BINARY_DIR}/tests)
add_test(NAME tools_export
         COMMAND bash ${MSR_TOOLS_SRC}/tools/ctl/testing/export_test.sh
                 $<TARGET_FILE_DIR:ms-rendezvousctl> $<TARGET_FILE:export_test_ranktable_check>)
set_tests_properties(tools_export PROPERTIES TIMEOUT 120 LABELS "e2e;tools")

# The bench's resume retry timing (RetryScheduler, tools/bench/bench_util.cc) against real
# channels: a retry runs once, when the channel is READY or at the end of its backoff.
msr_integration_test(tools_bench_retry_test integration/bench_retry_test.cc
                     ${MSR_TOOLS_SRC}/tools/bench/bench_util.cc)
target_link_libraries(tools_bench_retry_test PRIVATE ms_rendezvous_proto absl::synchronization
                                                     absl::time absl::strings
                                                     absl::random_random Threads::Threads)
