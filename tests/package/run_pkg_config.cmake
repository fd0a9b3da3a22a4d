# package:pkg_config - the installed pkg-config files from a consumer's side: every tessera*.pc in
# <prefix>/share/pkgconfig passes `pkg-config --validate` and resolves its Requires; then a one-file
# consumer (tests/consumer/main.cpp, the README's example) is compiled with nothing but
#   <c++> main.cpp -O2 $(pkg-config --cflags --libs tessera) -o main
# and run on the digits data.
#
#   cmake -DPREFIX=<install prefix> -DSOURCE=<main.cpp> -DDATA=<digits.csv> -DBINARY_DIR=<scratch>
#         -DCXX_COMPILER=<g++> [-DPKG_CONFIG=<pkg-config>] [-DCOMPONENTS=mpi,cuda,nccl] -P run_pkg_config.cmake
#
# COMPONENTS: the components installed, whose tessera-<component>.pc must be there.
cmake_minimum_required(VERSION 3.25)

function(fail step detail)
  message(NOTICE "${detail}")
  message(NOTICE "run_pkg_config: FAILED at step '${step}'")
  message(FATAL_ERROR "run_pkg_config: the ${step} step failed; details above")
endfunction()

foreach(_var PREFIX SOURCE DATA BINARY_DIR CXX_COMPILER)
  if("${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run_pkg_config: -D${_var}=... is required")
  endif()
endforeach()
if("${PKG_CONFIG}" STREQUAL "")
  find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
endif()

set(_pc_dir "${PREFIX}/share/pkgconfig")
# Only this prefix's files: no tessera.pc from another install may answer.
set(ENV{PKG_CONFIG_PATH} "${_pc_dir}")
unset(ENV{PKG_CONFIG_LIBDIR})

set(_modules tessera)
string(REPLACE "," ";" COMPONENTS "${COMPONENTS}")
foreach(_c IN LISTS COMPONENTS)
  list(APPEND _modules "tessera-${_c}")
endforeach()
file(GLOB _installed RELATIVE "${_pc_dir}" "${_pc_dir}/tessera*.pc")
foreach(_m IN LISTS _modules)
  if(NOT "${_m}.pc" IN_LIST _installed)
    fail(files "${_pc_dir}/${_m}.pc is missing (installed: ${_installed})")
  endif()
endforeach()
foreach(_pc IN LISTS _installed)
  string(REGEX REPLACE "\\.pc$" "" _m "${_pc}")
  execute_process(COMMAND "${PKG_CONFIG}" --validate "${_m}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    fail(validate "pkg-config --validate ${_m} exited with '${_rc}':\n${_out}")
  endif()
  execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs "${_m}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _flags ERROR_VARIABLE _err
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    fail(validate "pkg-config --cflags --libs ${_m} exited with '${_rc}':\n${_err}")
  endif()
  message(STATUS "run_pkg_config: ${_m}: ${_flags}")
endforeach()

execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs tessera OUTPUT_VARIABLE _flags OUTPUT_STRIP_TRAILING_WHITESPACE)
separate_arguments(_flags UNIX_COMMAND "${_flags}")
file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")
set(_exe "${BINARY_DIR}/main")
list(JOIN _flags " " _shown)
message(STATUS "run_pkg_config: ${CXX_COMPILER} ${SOURCE} -O2 ${_shown} -o ${_exe}")
execute_process(COMMAND "${CXX_COMPILER}" "${SOURCE}" -O2 ${_flags} -o "${_exe}"
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(compile "the compiler exited with '${_rc}'. Its output:\n${_out}")
endif()
execute_process(COMMAND "${_exe}" "${DATA}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  fail(run "${_exe} ${DATA} exited with '${_rc}'. Its output:\n${_out}")
endif()
message(STATUS "run_pkg_config: ran ${_exe} ${DATA}; its output:\n${_out}")
