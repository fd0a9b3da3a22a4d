# package:examples - examples/ built as an outside project against the installed package, the way
# the README tells a user to: configure examples/ with CMAKE_PREFIX_PATH=<prefix> and no build type
# (the project's Release default must apply), build every example, then run the main one (digits)
# from another folder, so that it reads the data through TESSERA_DATA_DIR, and have it write its
# history (--history).
#
#   cmake -DEXAMPLES_SOURCE_DIR=<examples> -DBINARY_DIR=<scratch> -DPREFIX=<install prefix>
#         -DDATA_DIR=<folder with digits.csv> -DGENERATOR=<name> [-DMAKE_PROGRAM=..] -DCXX_COMPILER=<path>
#         [-DEXE_SUFFIX=..] [-DWITH_MPI=ON] [-DTHRUST_INCLUDE_DIR=..] [-DCBLAS_INCLUDE_DIR=..] [-DCBLAS_LIBRARY=..]
#         -P run_examples.cmake
#
# WITH_MPI: the prefix holds the component mpi, so examples/mpi/*.cpp must be built too. A failing
# step prints "run_examples: FAILED at step ...".
cmake_minimum_required(VERSION 3.25)

function(fail step detail)
  message(NOTICE "${detail}")
  message(NOTICE "run_examples: FAILED at step '${step}'")
  message(FATAL_ERROR "run_examples: the ${step} step failed; details above")
endfunction()

foreach(_var EXAMPLES_SOURCE_DIR BINARY_DIR PREFIX DATA_DIR GENERATOR CXX_COMPILER)
  if("${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run_examples: -D${_var}=... is required")
  endif()
endforeach()
if(NOT EXISTS "${PREFIX}/share/cmake/tessera/tesseraConfig.cmake")
  fail(setup "no tessera installed in ${PREFIX}; the package:install test must run first")
endif()

set(_args "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DTESSERA_DATA_DIR=${DATA_DIR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
if(NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND _args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
foreach(_dep THRUST_INCLUDE_DIR CBLAS_INCLUDE_DIR CBLAS_LIBRARY)
  if(${_dep})
    list(APPEND _args "-DTESSERA_${_dep}=${${_dep}}")
  endif()
endforeach()

file(REMOVE_RECURSE "${BINARY_DIR}")
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${EXAMPLES_SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}" ${_args}
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(configure "cmake exited with '${_rc}'. Its output:\n${_out}")
endif()
if(_out MATCHES "CMAKE_BUILD_TYPE is empty")
  fail(configure "tessera warned of an empty build type: the examples' Release default did not apply:\n${_out}")
endif()
file(STRINGS "${BINARY_DIR}/CMakeCache.txt" _lines REGEX "^(tessera_DIR|CMAKE_BUILD_TYPE):")
set(_tessera_dir "")
set(_build_type "")
foreach(_l IN LISTS _lines)
  if(_l MATCHES "^tessera_DIR:[A-Z]+=(.*)$")
    set(_tessera_dir "${CMAKE_MATCH_1}")
  elseif(_l MATCHES "^CMAKE_BUILD_TYPE:[A-Z]+=(.*)$")
    set(_build_type "${CMAKE_MATCH_1}")
  endif()
endforeach()
file(REAL_PATH "${PREFIX}" _prefix_real)
if(EXISTS "${_tessera_dir}")
  file(REAL_PATH "${_tessera_dir}" _tessera_dir)
endif()
string(FIND "${_tessera_dir}/" "${_prefix_real}/" _at)
if(NOT _at EQUAL 0)
  fail(configure "find_package(tessera) used '${_tessera_dir}', which is not under the prefix '${_prefix_real}'")
endif()
if(NOT _build_type STREQUAL "Release")
  fail(configure "configured without a build type, the examples' build type is '${_build_type}', not Release")
endif()
message(STATUS "run_examples: configured (tessera_DIR=${_tessera_dir}, CMAKE_BUILD_TYPE=${_build_type})")

execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --parallel 2
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(build "cmake --build exited with '${_rc}'. Its output:\n${_out}")
endif()

file(GLOB _sources "${EXAMPLES_SOURCE_DIR}/*.cpp")
if(WITH_MPI)
  file(GLOB _mpi_sources "${EXAMPLES_SOURCE_DIR}/mpi/*.cpp")
  list(APPEND _sources ${_mpi_sources})
endif()
set(_built "")
foreach(_src IN LISTS _sources)
  get_filename_component(_name "${_src}" NAME_WE)
  if(NOT EXISTS "${BINARY_DIR}/${_name}${EXE_SUFFIX}")
    fail(build "the build succeeded but ${BINARY_DIR}/${_name}${EXE_SUFFIX} (from ${_src}) does not exist")
  endif()
  list(APPEND _built "${_name}")
endforeach()
list(JOIN _built ", " _built)
message(STATUS "run_examples: built ${_built}")

# The main example, from another folder and without a path: it must find digits.csv in TESSERA_DATA_DIR.
set(_run_dir "${BINARY_DIR}/run")
file(MAKE_DIRECTORY "${_run_dir}")
execute_process(COMMAND "${BINARY_DIR}/digits${EXE_SUFFIX}" --history history
                WORKING_DIRECTORY "${_run_dir}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(run "digits --history history exited with '${_rc}'. Its output:\n${_out}")
endif()
foreach(_f softmax.csv mlp.csv)
  if(NOT EXISTS "${_run_dir}/history/${_f}")
    fail(run "digits --history history wrote no ${_run_dir}/history/${_f}. Its output:\n${_out}")
  endif()
endforeach()
message(STATUS "run_examples: ran ${BINARY_DIR}/digits --history history in ${_run_dir}; its output:\n${_out}")
