# Runs `MPIEXEC -n NP EXE MODE` and checks that the job failed (non-zero exit status) within
# LIMIT seconds and that its output matches EXPECT. Used by the mpi:failure:* tests.
string(TIMESTAMP _t0 "%s")
execute_process(COMMAND ${MPIEXEC} -n ${NP} --oversubscribe ${EXE} ${MODE}
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err TIMEOUT ${LIMIT})
string(TIMESTAMP _t1 "%s")
math(EXPR _seconds "${_t1} - ${_t0}")
message("${_out}${_err}")
message("run_failure: exit status ${_rc} after ${_seconds} s")
if(_rc STREQUAL "0")
  message(FATAL_ERROR "run_failure: FAILED: the job exited with status 0, a failure was expected")
endif()
if(_rc MATCHES "timeout|Process terminated due to timeout")
  message(FATAL_ERROR "run_failure: FAILED: the job did not end within ${LIMIT} s")
endif()
if(NOT "${_out}${_err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "run_failure: FAILED: the output does not match: ${EXPECT}")
endif()
message("run_failure: OK")
