# Run after each C test executable is built (tests/CMakeLists.txt,
# telespool_c_test): asks it for its cases (`EXE --list`, tu_main in
# tests/testutil.h) and writes OUT, which ctest includes, with one test per
# case: NAME/case (labels "c;LABELS") and, with THREADS, tsan_NAME/case
# (label "tsan"), as CMake's gtest_discover_tests does.  Variables: EXE NAME
# OUT LABELS THREADS (LABELS a ";"-list, passed with "|" for ";").
string(REPLACE "|" ";" LABELS "${LABELS}")
execute_process(COMMAND "${EXE}" --list OUTPUT_VARIABLE out RESULT_VARIABLE rc
  TIMEOUT 60)
if(NOT rc EQUAL 0)
  file(REMOVE "${OUT}")
  message(FATAL_ERROR "${EXE} --list failed (${rc})")
endif()
string(REPLACE "\n" ";" cases "${out}")
set(text "# Written by tests/discover_cases.cmake from ${EXE} --list.\n")
foreach(c IN LISTS cases)
  if(c STREQUAL "")
    continue()
  endif()
  string(APPEND text
    "add_test([==[${NAME}/${c}]==] [==[${EXE}]==] [==[${c}]==])\n"
    "set_tests_properties([==[${NAME}/${c}]==] PROPERTIES LABELS [==[c;${LABELS}]==] TIMEOUT 300)\n")
  if(THREADS)
    string(APPEND text
      "add_test([==[tsan_${NAME}/${c}]==] [==[${EXE}]==] [==[${c}]==])\n"
      "set_tests_properties([==[tsan_${NAME}/${c}]==] PROPERTIES LABELS tsan TIMEOUT 600 ENVIRONMENT [==[TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1]==])\n")
  endif()
endforeach()
file(WRITE "${OUT}" "${text}")
