# Client library tests. Included from tests/CMakeLists.txt: include(${CMAKE_CURRENT_LIST_DIR}/client.cmake)
if(NOT TARGET GTest::gtest_main)
  find_package(GTest REQUIRED)
endif()
include(GoogleTest)

# The MindSpore environment contract: every variable, default and error message.
add_executable(client_env_test ${CMAKE_CURRENT_LIST_DIR}/unit/client_env_test.cc)
target_link_libraries(client_env_test PRIVATE ms_rendezvous GTest::gtest GTest::gmock
                      GTest::gtest_main)
gtest_discover_tests(client_env_test DISCOVERY_TIMEOUT 30)
