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
