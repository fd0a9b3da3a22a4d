# Driver for the `package:*` tests: configures, builds and runs the consumer project in
# tests/consumer with the same generator and compiler as the parent build, in Release.
#
#   cmake -DCONSUMER_SOURCE_DIR=<tests/consumer> -DCONSUMER_BINARY_DIR=<scratch folder>
#         -DGENERATOR=<name> [-DGENERATOR_PLATFORM=..] [-DGENERATOR_TOOLSET=..] [-DMAKE_PROGRAM=..]
#         -DCXX_COMPILER=<path> -DDATA=<digits.csv> [-DEXE_SUFFIX=.exe]
#         (-DPREFIX=<install prefix> | -DTESSERA_SOURCE_DIR=<tessera source tree>)
#         [-DTHRUST_INCLUDE_DIR=..] [-DCBLAS_INCLUDE_DIR=..] [-DCBLAS_LIBRARY=..]
#         [-DLAUNCHER=mpiexec|-n|2]   (run the program through this command)
#         [-DCUDA_COMPILER=<nvcc> -DCUDA_ARCHITECTURES=90]
#         [-DNCCL_INCLUDE_DIR=<folder with nccl.h> -DNCCL_LIBRARY=<libnccl.so*>]
#         -P run_consumer.cmake
#
# PREFIX: the consumer finds the installed package with find_package() (CMAKE_PREFIX_PATH=PREFIX),
# and the test fails unless tessera_DIR lies under PREFIX. TESSERA_SOURCE_DIR: the consumer uses
# add_subdirectory() on that tree instead. NCCL_INCLUDE_DIR and NCCL_LIBRARY: the test lays that
# NCCL out as the nvidia-nccl wheel does (nvidia/nccl/include/nccl.h, nvidia/nccl/lib/libnccl.so.2
# and nothing else) beside the build folder, passes it as NCCL_ROOT, and fails unless the consumer
# took both nccl.h and the library from there. A failing step prints a line "run_consumer: FAILED at step ...",
# which the tests treat as failure whatever else the output says.
cmake_minimum_required(VERSION 3.25)

# The details go out verbatim (message(FATAL_ERROR) would reflow a compiler's output).
function(fail step detail)
  message(NOTICE "${detail}")
  message(NOTICE "run_consumer: FAILED at step '${step}' (${_mode})")
  message(FATAL_ERROR "run_consumer: the ${step} step failed; details above")
endfunction()

foreach(_var CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR GENERATOR CXX_COMPILER DATA)
  if("${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer: -D${_var}=... is required")
  endif()
endforeach()

set(_cache_args "")
if(NOT "${PREFIX}" STREQUAL "" AND "${TESSERA_SOURCE_DIR}" STREQUAL "")
  set(_mode "find_package, prefix ${PREFIX}")
  if(NOT EXISTS "${PREFIX}")
    fail(setup "install prefix ${PREFIX} does not exist; the package:install test must run first")
  endif()
  list(APPEND _cache_args "-DCMAKE_PREFIX_PATH=${PREFIX}")
elseif("${PREFIX}" STREQUAL "" AND NOT "${TESSERA_SOURCE_DIR}" STREQUAL "")
  set(_mode "add_subdirectory ${TESSERA_SOURCE_DIR}")
  list(APPEND _cache_args "-DTESSERA_CONSUMER_SOURCE_DIR=${TESSERA_SOURCE_DIR}")
else()
  message(FATAL_ERROR "run_consumer: give exactly one of -DPREFIX=... and -DTESSERA_SOURCE_DIR=...")
endif()
if(NOT EXISTS "${DATA}")
  fail(setup "data file ${DATA} does not exist")
endif()

# Same toolchain as the parent build; dependency locations only where the parent had them.
if(NOT "${GENERATOR_PLATFORM}" STREQUAL "")
  list(APPEND _cache_args -A "${GENERATOR_PLATFORM}")
endif()
if(NOT "${GENERATOR_TOOLSET}" STREQUAL "")
  list(APPEND _cache_args -T "${GENERATOR_TOOLSET}")
endif()
if(NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND _cache_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
foreach(_dep THRUST_INCLUDE_DIR CBLAS_INCLUDE_DIR CBLAS_LIBRARY)
  if(${_dep})  # skips empty and *-NOTFOUND values
    list(APPEND _cache_args "-DTESSERA_${_dep}=${${_dep}}")
  endif()
endforeach()

if(CUDA_COMPILER)
  list(APPEND _cache_args "-DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}" "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}")
endif()

# A fresh build folder every time, so no cached tessera_DIR or stale object survives.
file(REMOVE_RECURSE "${CONSUMER_BINARY_DIR}")

set(_nccl_root "")
if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  set(_nccl_root "${CONSUMER_BINARY_DIR}-wheel/nvidia/nccl")
  file(REMOVE_RECURSE "${CONSUMER_BINARY_DIR}-wheel")
  file(MAKE_DIRECTORY "${_nccl_root}/include" "${_nccl_root}/lib")
  file(REAL_PATH "${NCCL_LIBRARY}" _nccl_lib_real)
  file(CREATE_LINK "${NCCL_INCLUDE_DIR}/nccl.h" "${_nccl_root}/include/nccl.h" SYMBOLIC)
  file(CREATE_LINK "${_nccl_lib_real}" "${_nccl_root}/lib/libnccl.so.2" SYMBOLIC)
  list(APPEND _cache_args "-DNCCL_ROOT=${_nccl_root}")
endif()
set(_bin_dir "${CONSUMER_BINARY_DIR}/bin")

message(STATUS "run_consumer: configuring ${CONSUMER_SOURCE_DIR} (${_mode})")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${CONSUMER_BINARY_DIR}" -G "${GENERATOR}"
          "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" -DCMAKE_BUILD_TYPE=Release
          "-DCMAKE_RUNTIME_OUTPUT_DIRECTORY=${_bin_dir}" "-DCMAKE_RUNTIME_OUTPUT_DIRECTORY_RELEASE=${_bin_dir}"
          ${_cache_args}
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(configure "cmake exited with '${_rc}'. Its output:\n${_out}")
endif()

if(NOT "${PREFIX}" STREQUAL "")
  # The package must come from the prefix just installed, not from some other install.
  file(STRINGS "${CONSUMER_BINARY_DIR}/CMakeCache.txt" _dir_line REGEX "^tessera_DIR:")
  string(REGEX REPLACE "^tessera_DIR:[A-Z]+=" "" _tessera_dir "${_dir_line}")
  file(REAL_PATH "${PREFIX}" _prefix_real)
  if(EXISTS "${_tessera_dir}")
    file(REAL_PATH "${_tessera_dir}" _tessera_dir)
  endif()
  string(FIND "${_tessera_dir}/" "${_prefix_real}/" _at)
  if(NOT _at EQUAL 0)
    fail(configure "find_package(tessera) used '${_tessera_dir}', which is not under the prefix '${_prefix_real}'")
  endif()
  message(STATUS "run_consumer: configured, tessera_DIR=${_tessera_dir}")
  if(_nccl_root)  # nccl.h and libnccl both from the wheel-shaped root, no other NCCL
    foreach(_what INCLUDE_DIR LIBRARY)
      file(STRINGS "${CONSUMER_BINARY_DIR}/CMakeCache.txt" _line REGEX "^TESSERA_NCCL_${_what}:")
      string(REGEX REPLACE "^[A-Z_]+:[A-Z]+=" "" _found "${_line}")
      string(FIND "${_found}" "${_nccl_root}/" _at)
      if(NOT _at EQUAL 0)
        fail(configure "NCCL_ROOT=${_nccl_root} was given, but TESSERA_NCCL_${_what} is '${_found}'")
      endif()
      message(STATUS "run_consumer: TESSERA_NCCL_${_what}=${_found}")
    endforeach()
  endif()
else()
  message(STATUS "run_consumer: configured")
endif()

execute_process(
  COMMAND "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY_DIR}" --config Release
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(build "cmake --build exited with '${_rc}'. Its output:\n${_out}")
endif()
message(STATUS "run_consumer: built")
if(_nccl_root)  # the compiler read the root's nccl.h, not another on its include path (the toolkit's)
  file(GLOB_RECURSE _depfiles "${CONSUMER_BINARY_DIR}/CMakeFiles/*.o.d")
  set(_nccl_headers "")
  foreach(_d IN LISTS _depfiles)
    file(STRINGS "${_d}" _lines REGEX "/nccl\\.h[ \\\\]*$")
    list(APPEND _nccl_headers ${_lines})
  endforeach()
  if(NOT _nccl_headers)
    fail(build "no dependency file under ${CONSUMER_BINARY_DIR}/CMakeFiles names an nccl.h")
  endif()
  foreach(_h IN LISTS _nccl_headers)
    string(STRIP "${_h}" _h)
    string(REGEX REPLACE "[ \\]+$" "" _h "${_h}")
    string(FIND "${_h}" "${_nccl_root}/include/nccl.h" _at)
    if(NOT _at EQUAL 0)
      fail(build "the compiler read ${_h}, not ${_nccl_root}/include/nccl.h")
    endif()
  endforeach()
  message(STATUS "run_consumer: nccl.h read from ${_nccl_root}/include")
endif()

set(_exe "${_bin_dir}/tessera_consumer${EXE_SUFFIX}")
if(NOT EXISTS "${_exe}")
  fail(run "the build succeeded but ${_exe} does not exist")
endif()
# LAUNCHER: a command that starts the program, its words separated by '|' (e.g. mpiexec|-n|2).
set(_launcher "")
if(NOT "${LAUNCHER}" STREQUAL "")
  string(REPLACE "|" ";" _launcher "${LAUNCHER}")
endif()
execute_process(
  COMMAND ${_launcher} "${_exe}" "${DATA}"
  WORKING_DIRECTORY "${CONSUMER_BINARY_DIR}"
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(run "${_exe} ${DATA} exited with '${_rc}'. Its output:\n${_out}")
endif()
message(STATUS "run_consumer: ran ${_exe} ${DATA}; its output:\n${_out}")
