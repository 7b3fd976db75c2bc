# systemd: the unit file (systemd-analyze verify, security score <= 2.0) and the daemon's
# sd_notify protocol (READY=1 / WATCHDOG=1 / STOPPING=1) without systemd.
set(MSR_UNIT ${CMAKE_SOURCE_DIR}/systemd/ms-rendezvousd.service)
set(MSR_DAEMON ${CMAKE_RUNTIME_OUTPUT_DIRECTORY}/ms-rendezvousd)
add_test(NAME systemd_unit_verify
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/systemd/check_unit.sh verify ${MSR_UNIT} ${MSR_DAEMON})
add_test(NAME systemd_unit_security
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/systemd/check_unit.sh security ${MSR_UNIT}
                 ${MSR_DAEMON} 2.0)
set_tests_properties(systemd_unit_verify systemd_unit_security PROPERTIES
                     LABELS systemd SKIP_RETURN_CODE 77 TIMEOUT 60)

find_package(PkgConfig REQUIRED)
pkg_check_modules(MSR_TEST_LIBSYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
add_executable(systemd_notify_e2e_test e2e/systemd_notify_e2e_test.cc
                                       ${CMAKE_SOURCE_DIR}/server/systemd_notify.cc)
target_link_libraries(systemd_notify_e2e_test PRIVATE msr_test_util GTest::gtest_main
                      ms_rendezvous_server PkgConfig::MSR_TEST_LIBSYSTEMD absl::strings absl::time)
target_compile_definitions(systemd_notify_e2e_test PRIVATE
                           MSR_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
set_target_properties(systemd_notify_e2e_test PROPERTIES
                      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_dependencies(systemd_notify_e2e_test ms-rendezvousd)
gtest_discover_tests(systemd_notify_e2e_test DISCOVERY_TIMEOUT 60
                     PROPERTIES LABELS e2e TIMEOUT 120)
# All of them: ctest -R "[Ss]ystemd"
