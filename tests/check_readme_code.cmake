# readme:usage_code - the first ```cpp block after a Markdown heading containing "Usage" in
# README.md must equal tests/consumer/main.cpp byte for byte (the package tests build and run that
# file, so the README's example is known to compile and to work).
#
#   cmake -DREADME=<README.md> -DEXPECTED=<tests/consumer/main.cpp> [-DOUT=<file>] -P check_readme_code.cmake
#
# OUT: where to write the extracted block (for a diff by hand); shown with `diff -u` on a mismatch
# when diff is available. Headings are ATX ("## Usage"), outside fenced code blocks.
cmake_minimum_required(VERSION 3.25)

# fail(<summary> [<details>]): details are printed verbatim (message(FATAL_ERROR) reflows text).
function(fail summary)
  if(ARGC GREATER 1)
    message(NOTICE "${ARGV1}")
  endif()
  message(FATAL_ERROR "readme:usage_code: ${summary}")
endfunction()

foreach(_var README EXPECTED)
  if("${${_var}}" STREQUAL "")
    fail("-D${_var}=... is required")
  endif()
  if(NOT EXISTS "${${_var}}")
    fail("${${_var}} does not exist")
  endif()
endforeach()

file(READ "${README}" _text)
file(READ "${EXPECTED}" _expected)
string(LENGTH "${_text}" _len)

# Walk the README line by line with offsets (no CMake lists: the code holds ';', '[' and '\').
set(_pos 0)
set(_lineno 0)
set(_in_fence FALSE)
set(_heading "")
set(_block_start -1)   # offset of the first line inside the ```cpp block
set(_block_end -1)     # offset of its closing fence
while(_pos LESS _len)
  math(EXPR _lineno "${_lineno} + 1")
  string(SUBSTRING "${_text}" ${_pos} -1 _rest)
  string(FIND "${_rest}" "\n" _nl)
  if(_nl EQUAL -1)
    set(_line "${_rest}")
    set(_next ${_len})
  else()
    string(SUBSTRING "${_rest}" 0 ${_nl} _line)
    math(EXPR _next "${_pos} + ${_nl} + 1")
  endif()
  string(REGEX REPLACE "\r$" "" _line "${_line}")

  if(_line MATCHES "^ ? ? ?(```|~~~)")
    if(_in_fence)
      set(_in_fence FALSE)
      if(NOT _block_start EQUAL -1)
        set(_block_end ${_pos})
        break()
      endif()
    else()
      set(_in_fence TRUE)
      if(NOT _heading STREQUAL "" AND _line MATCHES "^```cpp[ \t]*$")
        set(_block_start ${_next})
        set(_block_line ${_lineno})
      endif()
    endif()
  elseif(NOT _in_fence AND _heading STREQUAL "" AND _line MATCHES "^ ? ? ?#+[ \t].*Usage")
    set(_heading "${_line}")
    set(_heading_line ${_lineno})
  endif()
  set(_pos ${_next})
endwhile()

if(_heading STREQUAL "")
  fail("${README} has no heading containing \"Usage\" (e.g. \"## Usage\"); expected one followed by a ```cpp block identical to ${EXPECTED}")
endif()
if(_block_start EQUAL -1)
  fail("${README}: no ```cpp block after the heading \"${_heading}\" (line ${_heading_line})")
endif()
if(_block_end EQUAL -1)
  fail("${README}: the ```cpp block opened on line ${_block_line} is never closed")
endif()
math(EXPR _block_len "${_block_end} - ${_block_start}")
string(SUBSTRING "${_text}" ${_block_start} ${_block_len} _block)

if(NOT "${OUT}" STREQUAL "")
  file(WRITE "${OUT}" "${_block}")
endif()

if(_block STREQUAL _expected)
  message(STATUS "readme:usage_code: the ```cpp block on line ${_block_line} of README.md (under \"${_heading}\") "
                 "equals ${EXPECTED}")
  return()
endif()

# Find the first line that differs, to say what is wrong.
string(LENGTH "${_block}" _blen)
string(LENGTH "${_expected}" _elen)
set(_i 0)
set(_line_start 0)
set(_rel_line 1)
while(_i LESS _blen AND _i LESS _elen)
  string(SUBSTRING "${_block}" ${_i} 1 _a)
  string(SUBSTRING "${_expected}" ${_i} 1 _b)
  if(NOT _a STREQUAL _b)
    break()
  endif()
  if(_a STREQUAL "\n")
    math(EXPR _rel_line "${_rel_line} + 1")
    math(EXPR _line_start "${_i} + 1")
  endif()
  math(EXPR _i "${_i} + 1")
endwhile()

function(line_at text start out)
  string(SUBSTRING "${text}" ${start} -1 _r)
  string(FIND "${_r}" "\n" _n)
  if(_n EQUAL -1)
    set(${out} "${_r}<end of text, no newline>" PARENT_SCOPE)
  else()
    string(SUBSTRING "${_r}" 0 ${_n} _l)
    set(${out} "${_l}" PARENT_SCOPE)
  endif()
endfunction()

math(EXPR _readme_line "${_block_line} + ${_rel_line}")
math(EXPR _col "${_i} - ${_line_start} + 1")
if(_i LESS _blen)
  line_at("${_block}" ${_line_start} _readme_text)
else()
  set(_readme_text "<end of the README block>")
endif()
if(_i LESS _elen)
  line_at("${_expected}" ${_line_start} _expected_text)
else()
  set(_expected_text "<end of main.cpp>")
endif()

set(_diff "")
find_program(_diff_exe diff)
if(_diff_exe AND NOT "${OUT}" STREQUAL "")
  execute_process(COMMAND "${_diff_exe}" -u "${EXPECTED}" "${OUT}" OUTPUT_VARIABLE _diff ERROR_VARIABLE _diff)
  set(_diff "\ndiff -u main.cpp README-block:\n${_diff}")
endif()

string(CONCAT _details
     "readme:usage_code: the ```cpp block on line ${_block_line} of ${README} (under \"${_heading}\") differs from ${EXPECTED}.\n"
     "First difference at line ${_rel_line} of the code, column ${_col} (README.md line ${_readme_line}):\n"
     "  README.md: ${_readme_text}\n"
     "  main.cpp:  ${_expected_text}\n"
     "(README block: ${_blen} bytes, main.cpp: ${_elen} bytes)${_diff}")
fail("README.md's usage example differs from tests/consumer/main.cpp (details above); make them identical" "${_details}")
