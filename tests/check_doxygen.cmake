# docs:doxygen: runs Doxygen on the configured Doxyfile and fails, listing them, on any warning
# (Doxyfile.in sets WARN_AS_ERROR = FAIL_ON_WARNINGS, so Doxygen itself exits non-zero too).
#   cmake -DDOXYGEN=<doxygen> -DDOXYFILE=<Doxyfile> -DDIR=<working folder> -P check_doxygen.cmake
execute_process(COMMAND "${DOXYGEN}" "${DOXYFILE}" WORKING_DIRECTORY "${DIR}"
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
string(REGEX MATCHALL "[^\n]*: (warning|error): [^\n]*" _warnings "${_out}\n${_err}")
list(LENGTH _warnings _count)
if(_count GREATER 0 OR NOT _rc EQUAL 0)
  message("${_err}")
  message(FATAL_ERROR "docs:doxygen: FAILED: Doxygen exited with ${_rc} and ${_count} warning(s) above")
endif()
message("docs:doxygen: OK: ${DIR}/html/index.html, no warnings")
