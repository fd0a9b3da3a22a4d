# Doxygen input filter for README.md (FILTER_PATTERNS in Doxyfile.in): gives every heading of
# level 2 and below the anchor GitHub gives it (`## Install and use` -> {#install-and-use}), so that
# the README's links within itself resolve, and turns its relative links to docs/*.md, which are not
# part of the reference, into links to those files in the source tree. Lines are neither added nor
# removed: Doxygen's warnings keep the README's line numbers.
#   cmake -DSOURCE_DIR=<checkout> -DWORK_DIR=<folder for a temporary file> -P markdown_filter.cmake <file.md>
math(EXPR _last "${CMAKE_ARGC} - 1")
set(_in "${CMAKE_ARGV${_last}}")
file(READ "${_in}" _text)
string(REGEX MATCHALL "\n##+ [^\n]*" _headings "\n${_text}")
foreach(_h IN LISTS _headings)
  if(_h MATCHES "\\{#")
    continue()
  endif()
  string(REGEX REPLACE "^\n#+ " "" _slug "${_h}")
  string(TOLOWER "${_slug}" _slug)
  string(REGEX REPLACE "[^a-z0-9 _-]" "" _slug "${_slug}")
  string(REPLACE " " "-" _slug "${_slug}")
  string(REPLACE "${_h}\n" "${_h} {#${_slug}}\n" _text "${_text}")
endforeach()
string(REGEX REPLACE "\\]\\((docs/[^)]*)\\)" "](file://${SOURCE_DIR}/\\1)" _text "${_text}")
string(MD5 _id "${_in}")
set(_tmp "${WORK_DIR}/markdown_filter_${_id}.md")
file(WRITE "${_tmp}" "${_text}")
execute_process(COMMAND ${CMAKE_COMMAND} -E cat "${_tmp}")
file(REMOVE "${_tmp}")
