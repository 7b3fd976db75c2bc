# StateStore tests. Included from tests/CMakeLists.txt after msr_unit_test() is defined.

# SqliteStateStore: every field round-trips, order, group commit, the state-dir lock, clear open
# errors, and crash consistency (a forked child is SIGKILLed between COMMIT and ack, or at random).
msr_unit_test(sqlite_state_store_test ${CMAKE_CURRENT_LIST_DIR}/unit/sqlite_state_store_test.cc)
target_link_libraries(sqlite_state_store_test PRIVATE ms_rendezvous_store SQLite::SQLite3
                                                      Threads::Threads absl::synchronization
                                                      absl::strings absl::time)
