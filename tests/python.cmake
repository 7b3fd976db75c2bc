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

# ms_rendezvous.torch (python/ms_rendezvous/torch.py): torch.distributed Store on the job KV and
# init_process_group("gloo") with the daemon's ranks, against a real daemon and Debian's
# python3-torch (CPU). Registered only when that interpreter can import torch.distributed.
if(TARGET _ms_rendezvous)
  execute_process(COMMAND ${Python3_EXECUTABLE} -c "import torch.distributed"
                  RESULT_VARIABLE MSR_PY_TORCH_RC OUTPUT_QUIET ERROR_QUIET)
  if(MSR_PY_TORCH_RC EQUAL 0)
    add_test(NAME python_torch_test
             COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${CMAKE_BINARY_DIR}/python
                     MS_RENDEZVOUSD=$<TARGET_FILE:ms-rendezvousd>
                     MS_RENDEZVOUSCTL=$<TARGET_FILE:ms-rendezvousctl>
                     ${Python3_EXECUTABLE} -B ${CMAKE_CURRENT_LIST_DIR}/python/test_torch.py -v)
    set_tests_properties(python_torch_test PROPERTIES LABELS "python;e2e" TIMEOUT 180)
  else()
    message(STATUS "${Python3_EXECUTABLE} cannot import torch.distributed (python3-torch): "
                   "skipping python_torch_test")
  endif()
endif()
