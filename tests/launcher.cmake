# e2e tests of the launcher ms-rendezvous-run (tools/run): real launcher, embedded scheduler and
# ms-rendezvous-probe workers. Included from tests/CMakeLists.txt.
get_filename_component(MSR_LAUNCHER_SRC ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)

add_executable(launcher_e2e_test ${MSR_LAUNCHER_SRC}/tests/e2e/launcher_e2e_test.cc)
target_link_libraries(launcher_e2e_test PRIVATE msr_test_util GTest::gtest_main absl::strings
                                                absl::time)
target_compile_definitions(launcher_e2e_test PRIVATE
                           MSR_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
set_target_properties(launcher_e2e_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                   ${CMAKE_BINARY_DIR}/tests)
add_dependencies(launcher_e2e_test ms-rendezvous-run ms-rendezvous-probe ms-rendezvousd)
gtest_discover_tests(launcher_e2e_test DISCOVERY_TIMEOUT 60
                     PROPERTIES LABELS e2e TIMEOUT 180)
