# Configures and builds the fuzz project (tests/fuzz) with clang, then writes the seed corpora:
#   cmake -DSOURCE=<tests/fuzz> -DBINARY=<folder> -DCXX=<clang++> -DTESSERA=<source tree>
#         -DTHRUST=<dir> -DCBLAS_INCLUDE=<dir> -DCBLAS_LIBRARY=<file> -P build.cmake
foreach(_v SOURCE BINARY CXX TESSERA THRUST CBLAS_INCLUDE CBLAS_LIBRARY)
  if("${${_v}}" STREQUAL "")
    message(FATAL_ERROR "fuzz build: -D${_v}=... is required")
  endif()
endforeach()
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE}" -B "${BINARY}" "-DCMAKE_CXX_COMPILER=${CXX}"
                        -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DTESSERA_SOURCE_DIR=${TESSERA}"
                        "-DTESSERA_THRUST_INCLUDE_DIR=${THRUST}" "-DTESSERA_CBLAS_INCLUDE_DIR=${CBLAS_INCLUDE}"
                        "-DTESSERA_CBLAS_LIBRARY=${CBLAS_LIBRARY}"
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "fuzz build: configuring failed:\n${_out}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BINARY}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "fuzz build: building failed:\n${_out}")
endif()
file(REMOVE_RECURSE "${BINARY}/seeds")
execute_process(COMMAND "${BINARY}/write_seeds" "${BINARY}/seeds" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "fuzz build: writing the seed corpora failed:\n${_out}")
endif()
message(STATUS "fuzz build: targets and seed corpora in ${BINARY}")
