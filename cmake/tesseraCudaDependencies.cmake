# Finds what tessera's components cuda and nccl need: the CUDA toolkit (CUDA::cudart,
# CUDA::cublas) and NCCL, and defines tessera::nccl_library. Used by the build tree and, installed
# next to tesseraConfig.cmake, by consumers.
#
# NCCL is looked for under NCCL_ROOT first (a CMake or environment variable: an NCCL install or the
# `nvidia-nccl-cu*` wheel's folder, site-packages/nvidia/nccl), then in the CUDA toolkit. Override
# with TESSERA_NCCL_INCLUDE_DIR and TESSERA_NCCL_LIBRARY.
include_guard(GLOBAL)
include(CMakeFindDependencyMacro)

find_dependency(CUDAToolkit)

macro(tessera_find_nccl)
  if(NOT TARGET tessera::nccl_library)
    find_path(TESSERA_NCCL_INCLUDE_DIR nccl.h
      HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}
      PATH_SUFFIXES include
      DOC "Folder holding nccl.h")
    find_library(TESSERA_NCCL_LIBRARY NAMES nccl libnccl.so.2
      HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
      PATH_SUFFIXES lib lib64
      DOC "The NCCL library")
    if(TESSERA_NCCL_INCLUDE_DIR AND TESSERA_NCCL_LIBRARY)
      add_library(tessera::nccl_library INTERFACE IMPORTED)
      set_target_properties(tessera::nccl_library PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TESSERA_NCCL_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES "${TESSERA_NCCL_LIBRARY}")
    endif()
  endif()
endmacro()
