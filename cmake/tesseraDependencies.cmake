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
