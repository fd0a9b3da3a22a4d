# tessera_install_pkgconfig(): pkg-config files for the core and each component this build has -
# tessera.pc, tessera-mpi.pc, tessera-cuda.pc, tessera-nccl.pc - installed into
# <prefix>/${CMAKE_INSTALL_DATADIR}/pkgconfig (tessera itself has no architecture-specific file).
#
# The prefix written into them is the one the install step uses, which `cmake --install --prefix`
# may set long after configuring: each file is configured twice, at configure time with everything
# but the prefix (cmake/<name>.pc.in -> <build>/pkgconfig/<name>.pc.in, @TESSERA_PC_PREFIX@ kept),
# and by the install step with its CMAKE_INSTALL_PREFIX. Dependencies (Thrust, CBLAS, OpenMP, MPI,
# CUDA, NCCL) are named by the flags of what this configure step found, as the CMake package finds
# them again on the consumer's machine.
include_guard(GLOBAL)

# -L<dir> -l<name> for lib<name>.so / .a, a full path for other files (libnccl.so.2), flags as they are
function(_tessera_pc_libs out)
  set(_flags "")
  foreach(_lib IN LISTS ARGN)
    if(_lib MATCHES "^-")
      list(APPEND _flags "${_lib}")
    elseif(_lib MATCHES "^(.*)/lib([^/]+)\\.(so|a|dylib)$")
      list(APPEND _flags "-L${CMAKE_MATCH_1}" "-l${CMAKE_MATCH_2}")
    elseif(IS_ABSOLUTE "${_lib}")
      list(APPEND _flags "${_lib}")
    elseif(NOT _lib STREQUAL "")
      list(APPEND _flags "-l${_lib}")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _flags)
  list(JOIN _flags " " _flags)
  set(${out} "${_flags}" PARENT_SCOPE)
endfunction()

# -I<dir> for each folder that is not the compiler's own /usr/include
function(_tessera_pc_includes out)
  set(_flags "")
  foreach(_dir IN LISTS ARGN)
    if(NOT _dir STREQUAL "" AND NOT _dir STREQUAL "/usr/include")
      list(APPEND _flags "-I${_dir}")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _flags)
  list(JOIN _flags " " _flags)
  set(${out} "${_flags}" PARENT_SCOPE)
endfunction()

function(_tessera_pc_file name)
  set(_staged "${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc.in")
  set(_final "${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc")
  set(TESSERA_PC_PREFIX "@TESSERA_PC_PREFIX@")  # filled in by the install step
  configure_file("${PROJECT_SOURCE_DIR}/cmake/${name}.pc.in" "${_staged}" @ONLY)
  install(CODE "set(TESSERA_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
configure_file(\"${_staged}\" \"${_final}\" @ONLY)")
  install(FILES "${_final}" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
endfunction()

function(tessera_install_pkgconfig)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
    set(TESSERA_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
  else()
    set(TESSERA_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
  endif()
  set(_openmp "${OpenMP_CXX_FLAGS}")
  if(_openmp STREQUAL "")
    set(_openmp "-fopenmp")
  endif()

  _tessera_pc_includes(_inc "${TESSERA_THRUST_INCLUDE_DIR}" "${TESSERA_CBLAS_INCLUDE_DIR}")
  set(TESSERA_PC_CFLAGS "-std=c++20 ${_openmp} -I\${includedir}")
  if(_inc)
    string(APPEND TESSERA_PC_CFLAGS " ${_inc}")
  endif()
  _tessera_pc_libs(TESSERA_PC_LIBS "${TESSERA_CBLAS_LIBRARY}" "${_openmp}" -pthread)
  _tessera_pc_file(tessera)

  if(TARGET tessera_mpi)
    _tessera_pc_includes(_inc ${MPI_CXX_INCLUDE_DIRS})
    set(_defs "")
    foreach(_d IN LISTS MPI_CXX_COMPILE_DEFINITIONS)
      list(APPEND _defs "-D${_d}")
    endforeach()
    list(JOIN _defs " " _defs)
    string(STRIP "${_inc} ${_defs} ${MPI_CXX_COMPILE_OPTIONS}" TESSERA_PC_MPI_CFLAGS)
    _tessera_pc_libs(TESSERA_PC_MPI_LIBS ${MPI_CXX_LINK_FLAGS} ${MPI_CXX_LIBRARIES})
    _tessera_pc_file(tessera-mpi)
  endif()

  if(TARGET tessera_cuda)
    _tessera_pc_includes(TESSERA_PC_CUDA_CFLAGS ${CUDAToolkit_INCLUDE_DIRS})
    set(TESSERA_PC_CUDA_LIBS "-L${CUDAToolkit_LIBRARY_DIR} -lcudart -lcublas")
    _tessera_pc_file(tessera-cuda)
  endif()

  if(TARGET tessera_nccl)
    set(TESSERA_PC_NCCL_REQUIRES "tessera-cuda = ${PROJECT_VERSION}")
    _tessera_pc_includes(TESSERA_PC_NCCL_CFLAGS "${TESSERA_NCCL_INCLUDE_DIR}")
    if(TESSERA_NCCL_WITH_MPI)
      string(APPEND TESSERA_PC_NCCL_REQUIRES ", tessera-mpi = ${PROJECT_VERSION}")
      string(APPEND TESSERA_PC_NCCL_CFLAGS " -DTESSERA_NCCL_WITH_MPI=1")
    endif()
    _tessera_pc_libs(TESSERA_PC_NCCL_LIBS "${TESSERA_NCCL_LIBRARY}")
    _tessera_pc_file(tessera-nccl)
  endif()
endfunction()
