# Metrics tests. Included from tests/CMakeLists.txt after msr_unit_test() is defined.

# The core's MetricsSink wiring with a fake sink and a FakeClock.
msr_unit_test(core_metrics_sink_test ${CMAKE_CURRENT_LIST_DIR}/unit/metrics_sink_test.cc)
target_link_libraries(core_metrics_sink_test PRIVATE ms_rendezvous_core)

# e2e: daemon with --metrics-listen 127.0.0.1:0, probes holding a job, /metrics scraped with curl.
add_executable(metrics_e2e_test ${CMAKE_CURRENT_LIST_DIR}/e2e/metrics_e2e_test.cc)
target_link_libraries(metrics_e2e_test PRIVATE msr_test_util GTest::gtest_main absl::strings
                                               absl::time)
target_compile_definitions(metrics_e2e_test PRIVATE MSR_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
set_target_properties(metrics_e2e_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_dependencies(metrics_e2e_test ms-rendezvousd ms-rendezvous-probe)
gtest_discover_tests(metrics_e2e_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS e2e TIMEOUT 120)

# e2e security: TLS / mutual TLS with openssl-made certificates, job and admin tokens through
# ms-rendezvousctl, refusals checked through /metrics.
add_executable(security_e2e_test ${CMAKE_CURRENT_LIST_DIR}/e2e/security_e2e_test.cc)
target_link_libraries(security_e2e_test PRIVATE msr_test_util GTest::gtest_main absl::strings
                                                absl::time)
target_compile_definitions(security_e2e_test PRIVATE MSR_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
set_target_properties(security_e2e_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_dependencies(security_e2e_test ms-rendezvousd ms-rendezvous-probe ms-rendezvousctl)
gtest_discover_tests(security_e2e_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS e2e TIMEOUT 180)
