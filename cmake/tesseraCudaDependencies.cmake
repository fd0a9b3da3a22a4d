# Finds what tessera's components cuda and nccl need: the CUDA toolkit (CUDA::cudart,
# CUDA::cublas) and NCCL, and defines tessera::nccl_library. Used by the build tree and, installed
# next to tesseraConfig.cmake, by consumers.
#
# NCCL: when NCCL_ROOT is given (a CMake or environment variable: an NCCL install, or the
# `nvidia-nccl-cu*` wheel's folder site-packages/nvidia/nccl, whose lib/ holds only libnccl.so.2),
# nccl.h and the library are both taken from there and nowhere else, so that a header of one NCCL
# is never paired with the library of another (the toolkit's own, say). Without NCCL_ROOT, or when
# it holds no NCCL (a warning says so), both come from the CUDA toolkit. Override with
# TESSERA_NCCL_INCLUDE_DIR and TESSERA_NCCL_LIBRARY.
include_guard(GLOBAL)
include(CMakeFindDependencyMacro)

find_dependency(CUDAToolkit)

macro(tessera_find_nccl)
  if(NOT TARGET tessera::nccl_library)
    set(_tessera_nccl_roots ${NCCL_ROOT} $ENV{NCCL_ROOT})
    if(_tessera_nccl_roots AND NOT TESSERA_NCCL_INCLUDE_DIR AND NOT TESSERA_NCCL_LIBRARY)
      find_path(TESSERA_NCCL_INCLUDE_DIR nccl.h HINTS ${_tessera_nccl_roots} PATH_SUFFIXES include
        NO_DEFAULT_PATH DOC "Folder holding nccl.h")
      # NAMES_PER_DIR: the wheel's lib/ has only libnccl.so.2, which must win over a libnccl.so elsewhere
      find_library(TESSERA_NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR HINTS ${_tessera_nccl_roots}
        PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH DOC "The NCCL library")
      if(NOT TESSERA_NCCL_INCLUDE_DIR OR NOT TESSERA_NCCL_LIBRARY)
        message(WARNING "tessera: NCCL_ROOT='${_tessera_nccl_roots}' holds no include/nccl.h and lib/libnccl.so* "
                        "(found: '${TESSERA_NCCL_INCLUDE_DIR}', '${TESSERA_NCCL_LIBRARY}'); looking in the CUDA toolkit")
        unset(TESSERA_NCCL_INCLUDE_DIR CACHE)
        unset(TESSERA_NCCL_LIBRARY CACHE)
      endif()
    endif()
    find_path(TESSERA_NCCL_INCLUDE_DIR nccl.h
      HINTS ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}
      PATH_SUFFIXES include
      DOC "Folder holding nccl.h")
    find_library(TESSERA_NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR
      HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
      PATH_SUFFIXES lib lib64
      DOC "The NCCL library")
    if(TESSERA_NCCL_INCLUDE_DIR AND TESSERA_NCCL_LIBRARY)
      # SYSTEM FALSE: -I, not -isystem. nvcc puts its toolkit's include folder (which may hold another
      # nccl.h) after the -I folders but before every -isystem one.
      add_library(tessera::nccl_library INTERFACE IMPORTED)
      set_target_properties(tessera::nccl_library PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TESSERA_NCCL_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES "${TESSERA_NCCL_LIBRARY}" SYSTEM FALSE)
    endif()
  endif()
endmacro()
