# scripts/bench-compare (issue 8) in its small mode, so the comparison cannot rot: 64 members on
# ms-rendezvousd, torch's TCPStore and a real etcd, no chart; tests/bench_compare_check.py checks
# that all three completed and that the JSON line parses. Included from tests/CMakeLists.txt;
# registered only when etcd and etcdctl (etcd-server, etcd-client) are installed and Debian's
# /usr/bin/python3 can import torch.distributed (python3-torch), all in scripts/bootstrap.sh.
get_filename_component(MSR_BENCH_COMPARE_SRC ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
find_program(MSR_BENCH_COMPARE_ETCD etcd)
find_program(MSR_BENCH_COMPARE_ETCDCTL etcdctl)
execute_process(COMMAND /usr/bin/python3 -c "import torch.distributed"
                RESULT_VARIABLE MSR_BENCH_COMPARE_TORCH_RC OUTPUT_QUIET ERROR_QUIET)
if(MSR_BENCH_COMPARE_ETCD AND MSR_BENCH_COMPARE_ETCDCTL AND MSR_BENCH_COMPARE_TORCH_RC EQUAL 0)
  add_test(NAME bench_compare_smoke
           COMMAND /usr/bin/python3 -B ${CMAKE_CURRENT_LIST_DIR}/bench_compare_check.py
                   ${MSR_BENCH_COMPARE_SRC}/scripts/bench-compare
                   $<TARGET_FILE_DIR:ms-rendezvous-bench> $<TARGET_FILE:ms-rendezvous-bench-etcd>)
  set_tests_properties(bench_compare_smoke PROPERTIES LABELS "bench;e2e" TIMEOUT 60)
else()
  message(STATUS "skipping bench_compare_smoke: it needs etcd and etcdctl (etcd-server, "
                 "etcd-client) and torch.distributed in /usr/bin/python3 (python3-torch)")
endif()
