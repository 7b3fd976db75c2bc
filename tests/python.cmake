# Python bindings (python/): tests/python/test_client.py runs under the interpreter the module was
# built for (Debian's /usr/bin/python3) with PYTHONPATH=<build>/python, against a real
# ms-rendezvousd named by MSR_DAEMON. Included from tests/CMakeLists.txt; skipped when the module
# is not built (no pybind11-dev / python3-dev).
if(TARGET _ms_rendezvous)
  add_test(NAME python_client_test
           COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${CMAKE_BINARY_DIR}/python
                   MSR_DAEMON=$<TARGET_FILE:ms-rendezvousd>
                   ${Python3_EXECUTABLE} -B ${CMAKE_CURRENT_LIST_DIR}/python/test_client.py -v)
  set_tests_properties(python_client_test PROPERTIES LABELS "python;e2e" TIMEOUT 180)
endif()
