# Fuzz smoke test: builds the libFuzzer targets with clang (ASan + UBSan) in a separate build
# dir and runs each for 30 s from the committed seeds. TIMEOUT covers the clang build on 2 cores.
# The reproducers of the bugs it found are kept in fuzz/crashes/ and pinned by unit tests.
find_program(MSR_CLANGXX clang++)
if(MSR_CLANGXX)
  add_test(NAME fuzz_smoke
           COMMAND ${CMAKE_SOURCE_DIR}/fuzz/run_fuzzers.sh ${CMAKE_BINARY_DIR} 30)
  set_tests_properties(fuzz_smoke PROPERTIES LABELS fuzz TIMEOUT 600)
endif()
