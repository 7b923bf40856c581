# Runs PICK_DUMP twice, as two separate processes, and fails unless both runs succeed and
# print the same non-empty output, byte for byte.
#   cmake -DPICK_DUMP=/path/to/pick_dump -P compare_runs.cmake

if(NOT PICK_DUMP)
  message(FATAL_ERROR "PICK_DUMP is not set")
endif()

foreach(run 1 2)
  execute_process(COMMAND ${PICK_DUMP}
                  RESULT_VARIABLE rc_${run}
                  OUTPUT_VARIABLE out_${run}
                  ERROR_VARIABLE err_${run})
  if(NOT rc_${run} EQUAL 0)
    message(FATAL_ERROR "pick_dump run ${run} failed (${rc_${run}}): ${err_${run}}")
  endif()
endforeach()

string(LENGTH "${out_1}" len_1)
string(LENGTH "${out_2}" len_2)
if(len_1 EQUAL 0)
  message(FATAL_ERROR "pick_dump printed nothing")
endif()
if(NOT "${out_1}" STREQUAL "${out_2}")
  message(FATAL_ERROR "pick_dump runs differ (${len_1} vs ${len_2} bytes)")
endif()
message(STATUS "pick_dump: two runs identical, ${len_1} bytes")
