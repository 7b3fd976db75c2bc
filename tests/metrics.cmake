# Metrics tests. Included from tests/CMakeLists.txt after msr_unit_test() is defined.

# The core's MetricsSink wiring with a fake sink and a FakeClock.
msr_unit_test(core_metrics_sink_test ${CMAKE_CURRENT_LIST_DIR}/unit/metrics_sink_test.cc)
target_link_libraries(core_metrics_sink_test PRIVATE ms_rendezvous_core)
