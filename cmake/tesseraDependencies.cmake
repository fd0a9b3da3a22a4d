# Finds what tessera's default headers need and defines tessera::thrust and tessera::cblas.
# Used by the build tree and, installed next to tesseraConfig.cmake, by consumers.
include_guard(GLOBAL)
include(CMakeFindDependencyMacro)

find_dependency(Threads)
find_dependency(OpenMP COMPONENTS CXX)

# Thrust: the CUDA toolkit's CCCL first (one Thrust for the CPU and the CUDA backends), then a
# standalone CCCL or Debian's libthrust-dev. Override with -DTESSERA_THRUST_INCLUDE_DIR=...
if(NOT TARGET tessera::thrust)
  find_path(TESSERA_THRUST_INCLUDE_DIR thrust/version.h
    HINTS ${CCCL_ROOT} ${CUDAToolkit_ROOT} $ENV{CUDA_PATH} /usr/local/cuda
    PATH_SUFFIXES include/cccl cccl include
    DOC "Folder holding thrust/version.h")
  if(NOT TESSERA_THRUST_INCLUDE_DIR)
    message(FATAL_ERROR "tessera: Thrust headers not found. Install the CUDA toolkit (CCCL) or Debian's "
                        "libthrust-dev, or pass -DTESSERA_THRUST_INCLUDE_DIR=<folder with thrust/version.h>.")
  endif()
  add_library(tessera::thrust INTERFACE IMPORTED)
  set_target_properties(tessera::thrust PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TESSERA_THRUST_INCLUDE_DIR}")
endif()

# CBLAS: OpenBLAS by default, preferring its OpenMP build (Debian: libopenblas-openmp-dev), whose
# threads are OpenMP's own: with the pthread build, OpenMP's spinning workers and OpenBLAS's threads
# compete for the same cores (measured: a 3x slower one-worker training step on 2 cores).
# Override with TESSERA_CBLAS_INCLUDE_DIR and TESSERA_CBLAS_LIBRARY for another implementation.
if(NOT TARGET tessera::cblas)
  set(_tessera_omp_blas_inc "/usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp")
  set(_tessera_omp_blas_lib "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp")
  find_path(TESSERA_CBLAS_INCLUDE_DIR cblas.h HINTS "${_tessera_omp_blas_inc}" PATH_SUFFIXES openblas-pthread openblas
    DOC "Folder holding cblas.h")
  find_library(TESSERA_CBLAS_LIBRARY NAMES openblas cblas blas HINTS "${_tessera_omp_blas_lib}"
    DOC "A library providing cblas_sgemm")
  if(NOT TESSERA_CBLAS_INCLUDE_DIR OR NOT TESSERA_CBLAS_LIBRARY)
    message(FATAL_ERROR "tessera: CBLAS not found (cblas.h: '${TESSERA_CBLAS_INCLUDE_DIR}', library: "
                        "'${TESSERA_CBLAS_LIBRARY}'). On Debian: apt-get install libopenblas-dev.")
  endif()
  add_library(tessera::cblas INTERFACE IMPORTED)
  set_target_properties(tessera::cblas PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TESSERA_CBLAS_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${TESSERA_CBLAS_LIBRARY}")
endif()

# oneDNN, the GEMM backend TESSERA_GEMM=onednn (Debian: libdnnl-dev): tessera::dnnl, whose users
# compile with TESSERA_GEMM_ONEDNN=1 (gemm through dnnl_sgemm; gemv stays on CBLAS). The header and
# library first, then oneDNN's own package (DNNL::dnnl): Debian's package configuration requires
# OpenCL's development files, and a missing OpenCL there would stop the whole configuration, even
# where only the plain C library is used. Override with TESSERA_DNNL_INCLUDE_DIR and
# TESSERA_DNNL_LIBRARY. tessera_find_dnnl(REQUIRED) fails without it; without REQUIRED it returns
# quietly (the tests' second build of some test files with oneDNN).
function(tessera_find_dnnl)
  cmake_parse_arguments(_arg "REQUIRED" "" "" ${ARGN})
  if(TARGET tessera::dnnl)
    return()
  endif()
  find_path(TESSERA_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h DOC "Folder holding oneapi/dnnl/dnnl.h")
  find_library(TESSERA_DNNL_LIBRARY NAMES dnnl DOC "oneDNN's library (dnnl_sgemm)")
  if(NOT TESSERA_DNNL_INCLUDE_DIR OR NOT TESSERA_DNNL_LIBRARY)
    find_package(dnnl CONFIG QUIET)
  endif()
  if(TESSERA_DNNL_INCLUDE_DIR AND TESSERA_DNNL_LIBRARY)
    set(_link "${TESSERA_DNNL_LIBRARY}")
  elseif(TARGET DNNL::dnnl)
    set(_link DNNL::dnnl)
  else()
    if(_arg_REQUIRED)
      message(FATAL_ERROR "tessera: TESSERA_GEMM=onednn but oneDNN was not found (oneapi/dnnl/dnnl.h: "
                          "'${TESSERA_DNNL_INCLUDE_DIR}', library: '${TESSERA_DNNL_LIBRARY}'). On Debian: "
                          "apt-get install libdnnl-dev, or pass -DTESSERA_DNNL_INCLUDE_DIR and -DTESSERA_DNNL_LIBRARY.")
    endif()
    return()
  endif()
  add_library(tessera::dnnl INTERFACE IMPORTED)
  set_target_properties(tessera::dnnl PROPERTIES INTERFACE_LINK_LIBRARIES "${_link}"
    INTERFACE_COMPILE_DEFINITIONS TESSERA_GEMM_ONEDNN=1)
  if(_link STREQUAL TESSERA_DNNL_LIBRARY)
    set_target_properties(tessera::dnnl PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TESSERA_DNNL_INCLUDE_DIR}")
  endif()
endfunction()
# TESSERA_GEMM: set by the build, and by tesseraConfig.cmake to what the installed package was built with
if(TESSERA_GEMM STREQUAL "onednn")
  tessera_find_dnnl(REQUIRED)
endif()
