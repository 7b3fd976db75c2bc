# Client library tests. Included from tests/CMakeLists.txt after msr_unit_test() is defined:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/client.cmake)

# The MindSpore environment contract: every variable, default and error message.
if(COMMAND msr_unit_test)
  msr_unit_test(client_env_test ${CMAKE_CURRENT_LIST_DIR}/unit/client_env_test.cc)
else()
  find_package(GTest CONFIG REQUIRED)
  include(GoogleTest)
  add_executable(client_env_test ${CMAKE_CURRENT_LIST_DIR}/unit/client_env_test.cc)
  target_link_libraries(client_env_test PRIVATE GTest::gtest_main)
  gtest_discover_tests(client_env_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS unit)
endif()
target_link_libraries(client_env_test PRIVATE ms_rendezvous GTest::gtest GTest::gmock)

# Rank table, hostfile and launch env (pure functions over a member table), and the strict
# HCCL rank table reader.
if(COMMAND msr_unit_test)
  msr_unit_test(topology_export_test ${CMAKE_CURRENT_LIST_DIR}/unit/topology_export_test.cc)
  target_link_libraries(topology_export_test PRIVATE ms_rendezvous)
endif()

# The client library against an in-process RendezvousServer on port 0 (and a scripted fake
# daemon for the answers a real one gives only in a race).
if(COMMAND msr_integration_test)
  msr_integration_test(client_integration_test
                       ${CMAKE_CURRENT_LIST_DIR}/integration/client_test.cc)
  target_link_libraries(client_integration_test PRIVATE ms_rendezvous ms_rendezvous_server
                                                        absl::synchronization absl::time)
endif()

# The job KV, barrier and root-info API of the client (and, with Gloo, GlooStore and an
# in-process Gloo allreduce) against an in-process server and a scripted silent daemon.
if(COMMAND msr_integration_test)
  msr_integration_test(client_kv_integration_test
                       ${CMAKE_CURRENT_LIST_DIR}/integration/client_kv_test.cc)
  target_link_libraries(client_kv_integration_test PRIVATE ms_rendezvous ms_rendezvous_server
                                                           absl::synchronization absl::time)
  if(MSR_HAVE_GLOO)
    target_link_libraries(client_kv_integration_test PRIVATE ms_rendezvous_gloo)
    target_compile_definitions(client_kv_integration_test PRIVATE MSR_HAVE_GLOO=1)
  endif()
endif()

# e2e: 8 ms-rendezvous-probe --allreduce processes against one ms-rendezvousd (Gloo only).
if(MSR_HAVE_GLOO AND TARGET ms-rendezvous-probe AND TARGET ms-rendezvousd)
  add_executable(allreduce_e2e_test ${CMAKE_CURRENT_LIST_DIR}/e2e/allreduce_e2e_test.cc)
  target_link_libraries(allreduce_e2e_test PRIVATE GTest::gtest_main GTest::gmock absl::strings
                                                   absl::time)
  target_include_directories(allreduce_e2e_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_compile_definitions(allreduce_e2e_test PRIVATE
                             MSR_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  set_target_properties(allreduce_e2e_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                      ${CMAKE_BINARY_DIR}/tests)
  add_dependencies(allreduce_e2e_test ms-rendezvousd ms-rendezvous-probe)
  gtest_discover_tests(allreduce_e2e_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS e2e TIMEOUT 180)
endif()

# ms_rendezvous::Init(): the three startup methods from an injected environment, the rank table
# error table, and (with the embedded scheduler on a free port) the daemon-backed paths.
if(COMMAND msr_unit_test)
  msr_unit_test(init_test ${CMAKE_CURRENT_LIST_DIR}/unit/init_test.cc)
  target_link_libraries(init_test PRIVATE ms_rendezvous glog::glog absl::strings absl::time)
endif()

# e2e: the same probe under the three startup methods (rank table 2x4 without a daemon; real
# mpirun -np 4 with and without a daemon; dynamic cluster remapped by a rank table).
if(TARGET ms-rendezvous-probe AND TARGET ms-rendezvousd)
  add_executable(startup_methods_e2e_test ${CMAKE_CURRENT_LIST_DIR}/e2e/startup_methods_e2e_test.cc)
  target_link_libraries(startup_methods_e2e_test PRIVATE GTest::gtest_main GTest::gmock
                                                         absl::strings absl::time)
  target_include_directories(startup_methods_e2e_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_compile_definitions(startup_methods_e2e_test PRIVATE
                             MSR_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  set_target_properties(startup_methods_e2e_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                           ${CMAKE_BINARY_DIR}/tests)
  add_dependencies(startup_methods_e2e_test ms-rendezvousd ms-rendezvous-probe)
  gtest_discover_tests(startup_methods_e2e_test DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS e2e TIMEOUT 180)
endif()
