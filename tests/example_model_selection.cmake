# example:model_selection and mpi:example_model_selection - examples/model_selection (tasks on
# threads) with few epochs prints the results table, a best point cross-validated above 0.9 and a
# refit and an ensemble tested above 0.9. With MPIEXEC and MPI_EXE, examples/mpi/model_selection_mpi
# under `MPIEXEC -np 4 --ranks-per-task 2` must print the same table, best point and accuracies,
# digit for digit (every task trains in deterministic mode); only the lines with times may differ.
#
#   cmake -DEXE=<model_selection> [-DMPIEXEC=<mpirun> -DMPI_EXE=<model_selection_mpi>] -DNAME=<test> -P example_model_selection.cmake
set(_args --epochs 5)

function(fail what)
  message(FATAL_ERROR "${NAME}: FAILED: ${what}")
endfunction()

# The output without its timing lines ("grid: ... <where>", "search ... s").
function(deterministic_part out text)
  string(REGEX REPLACE "grid: [^\n]*\n" "" text "${text}")
  string(REGEX REPLACE "search [0-9.]+ s[^\n]*\n" "" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

execute_process(COMMAND ${EXE} ${_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _threads ERROR_VARIABLE _err TIMEOUT 120)
message("${_threads}${_err}")
if(NOT _rc STREQUAL "0")
  fail("model_selection ${_args} exited with status ${_rc}")
endif()
if(NOT _threads MATCHES "  #  accuracy  std       candidate\n" OR NOT _threads MATCHES "<- best\n")
  fail("no results table with a best point marked")
endif()
string(REGEX MATCHALL "\n +[0-9]+  0\\.[0-9]+ " _rows "${_threads}")
list(LENGTH _rows _n)
if(NOT _n EQUAL 12)
  fail("the table has ${_n} scored points, not the grid's 12")
endif()
if(NOT _threads MATCHES "best: #([0-9]+) [^\n]*cross-validated accuracy (0\\.[0-9]+)")
  fail("no line 'best: #N ... cross-validated accuracy X'")
endif()
set(_best_line "${CMAKE_MATCH_0}")
if(CMAKE_MATCH_2 LESS_EQUAL 0.9)
  fail("the best point's cross-validated accuracy is ${CMAKE_MATCH_2}, not above 0.9")
endif()
if(NOT _threads MATCHES "refit on all [0-9]+ training rows: test accuracy (0\\.[0-9]+)" OR CMAKE_MATCH_1 LESS_EQUAL 0.9)
  fail("no refit test accuracy above 0.9")
endif()
if(NOT _threads MATCHES "ensemble of 3 seeds [^\n]*together: test accuracy (0\\.[0-9]+)" OR CMAKE_MATCH_1 LESS_EQUAL 0.9)
  fail("no ensemble of 3 members with a test accuracy above 0.9")
endif()

if(MPI_EXE)
  execute_process(COMMAND ${MPIEXEC} -np 4 --oversubscribe ${MPI_EXE} --ranks-per-task 2 ${_args}
                  RESULT_VARIABLE _rc OUTPUT_VARIABLE _ranks ERROR_VARIABLE _err TIMEOUT 120)
  message("${_ranks}${_err}")
  if(NOT _rc STREQUAL "0")
    fail("mpirun -np 4 model_selection_mpi --ranks-per-task 2 ${_args} exited with status ${_rc}")
  endif()
  if(NOT _ranks MATCHES "4 ranks as 2 groups of 2\n")
    fail("the run does not say it ran on 4 ranks as 2 groups of 2")
  endif()
  string(FIND "${_ranks}" "${_best_line}" _at)
  if(_at EQUAL -1)
    fail("the ranks did not find the threads' best point: ${_best_line}")
  endif()
  deterministic_part(_a "${_threads}")
  deterministic_part(_b "${_ranks}")
  if(NOT _a STREQUAL _b)
    fail("the table or the accuracies on 2 groups of 2 ranks differ from the threads' run")
  endif()
endif()
message("${NAME}: OK")
