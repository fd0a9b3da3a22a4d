# package:add_subdirectory_scope - what add_subdirectory(tessera) does to a user's project, at
# configure time (nothing is compiled). A generated project that only adds tessera's tree:
#  1. without a build type and without asking for CUDA: no CUDA compiler is looked for and CUDA is
#     not enabled, no tessera::cuda, no test, example or benchmark target, Catch2 is not looked
#     for, and tessera warns that the empty build type compiles its headers at -O0;
#  2. with set(TESSERA_CUDA ON) before add_subdirectory() (when a CUDA compiler is given): CUDA is
#     enabled and tessera::cuda is there.
#
#   cmake -DTESSERA_SOURCE_DIR=<tree> -DBINARY_DIR=<scratch> -DGENERATOR=<name> [-DMAKE_PROGRAM=..]
#         -DCXX_COMPILER=<path> [-DCUDA_COMPILER=<nvcc>] [-DTHRUST_INCLUDE_DIR=..] [-DCBLAS_INCLUDE_DIR=..]
#         [-DCBLAS_LIBRARY=..] -P check_add_subdirectory.cmake
cmake_minimum_required(VERSION 3.25)

function(fail step detail)
  message(NOTICE "${detail}")
  message(NOTICE "check_add_subdirectory: FAILED at step '${step}'")
  message(FATAL_ERROR "check_add_subdirectory: the ${step} step failed; details above")
endfunction()

foreach(_var TESSERA_SOURCE_DIR BINARY_DIR GENERATOR CXX_COMPILER)
  if("${${_var}}" STREQUAL "")
    message(FATAL_ERROR "check_add_subdirectory: -D${_var}=... is required")
  endif()
endforeach()

set(_src "${BINARY_DIR}/project")
file(REMOVE_RECURSE "${BINARY_DIR}")
file(WRITE "${_src}/CMakeLists.txt" [=[
cmake_minimum_required(VERSION 3.25)
project(user_project CXX)
if(USER_WANTS_CUDA)
  set(TESSERA_CUDA ON)
endif()
add_subdirectory("${TESSERA_TREE}" tessera)
foreach(_t tessera::tessera tessera::mpi tessera::cuda tessera::nccl digits test_training bench_allreduce)
  if(TARGET ${_t})
    message(STATUS "user_project: target ${_t}")
  endif()
endforeach()
get_property(_langs GLOBAL PROPERTY ENABLED_LANGUAGES)
message(STATUS "user_project: languages ${_langs}")
]=])

set(_common "-DTESSERA_TREE=${TESSERA_SOURCE_DIR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
if(NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND _common "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
foreach(_dep THRUST_INCLUDE_DIR CBLAS_INCLUDE_DIR CBLAS_LIBRARY)
  if(${_dep})
    list(APPEND _common "-DTESSERA_${_dep}=${${_dep}}")
  endif()
endforeach()

# 1. plain add_subdirectory(), no build type
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${_src}" -B "${BINARY_DIR}/plain" -G "${GENERATOR}" ${_common}
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(plain "cmake exited with '${_rc}'. Its output:\n${_out}")
endif()
if(_out MATCHES "Looking for a CUDA compiler|CUDA compiler identification|Found CUDAToolkit")
  fail(plain "add_subdirectory(tessera) without TESSERA_CUDA looked for CUDA:\n${_out}")
endif()
if(_out MATCHES "user_project: languages [^\n]*CUDA")
  fail(plain "add_subdirectory(tessera) without TESSERA_CUDA enabled CUDA:\n${_out}")
endif()
if(_out MATCHES "user_project: target (tessera::cuda|tessera::nccl|digits|test_training|bench_allreduce)")
  fail(plain "add_subdirectory(tessera) made target ${CMAKE_MATCH_1}, which the user did not ask for:\n${_out}")
endif()
if(NOT _out MATCHES "user_project: target tessera::tessera")
  fail(plain "no tessera::tessera after add_subdirectory(tessera):\n${_out}")
endif()
file(STRINGS "${BINARY_DIR}/plain/CMakeCache.txt" _catch REGEX "^(Catch2_DIR|benchmark_DIR|CMAKE_CUDA_COMPILER):")
if(_catch)
  fail(plain "the user's cache holds ${_catch}: tessera looked for what only its own build needs")
endif()
if(NOT _out MATCHES "tessera: CMAKE_BUILD_TYPE is empty")
  fail(plain "configured without a build type, tessera did not warn that its headers compile at -O0:\n${_out}")
endif()
message(STATUS "check_add_subdirectory: plain add_subdirectory(): no CUDA looked for, nothing but tessera's "
               "targets, the empty build type reported")

# 2. set(TESSERA_CUDA ON) before add_subdirectory()
if(NOT "${CUDA_COMPILER}" STREQUAL "")
  execute_process(COMMAND "${CMAKE_COMMAND}" -S "${_src}" -B "${BINARY_DIR}/cuda" -G "${GENERATOR}" ${_common}
                          -DCMAKE_BUILD_TYPE=Release -DUSER_WANTS_CUDA=ON "-DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}"
                  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    fail(cuda "cmake exited with '${_rc}'. Its output:\n${_out}")
  endif()
  if(NOT _out MATCHES "user_project: target tessera::cuda" OR NOT _out MATCHES "user_project: languages [^\n]*CUDA")
    fail(cuda "set(TESSERA_CUDA ON) before add_subdirectory(tessera) gave no tessera::cuda or no CUDA:\n${_out}")
  endif()
  if(_out MATCHES "CMAKE_BUILD_TYPE is empty")
    fail(cuda "tessera warned of an empty build type although CMAKE_BUILD_TYPE=Release:\n${_out}")
  endif()
  message(STATUS "check_add_subdirectory: set(TESSERA_CUDA ON) before add_subdirectory(): CUDA enabled, tessera::cuda there")
else()
  message(STATUS "check_add_subdirectory: no CUDA compiler given; set(TESSERA_CUDA ON) not checked")
endif()
message(STATUS "check_add_subdirectory: OK")
