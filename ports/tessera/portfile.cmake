# tessera is header-only: the build installs the headers, the CMake package (tessera::tessera and
# the components the features ask for), the pkg-config files and nothing else. Thrust, OpenBLAS,
# OpenMP - and MPI, CUDA, NCCL for the features - are the system's; the package finds them again
# where a consumer loads it (docs/install.md).
set(VCPKG_BUILD_TYPE release)  # nothing is compiled: one (release) tree

# The source: tessera's git repository at commit TESSERA_GIT_REF. tessera has no public home yet,
# so by default the repository is the checkout this overlay port lies in (ports/tessera/../..) and
# the commit is its HEAD - what is committed, not the working tree. Set TESSERA_GIT_URL and
# TESSERA_GIT_REF (a full commit id) in a triplet, or in the environment with
# VCPKG_KEEP_ENV_VARS=TESSERA_GIT_URL;TESSERA_GIT_REF, to take another repository or commit.
# `vcpkg install --head` takes the tip of HEAD_REF instead.
foreach(_var TESSERA_GIT_URL TESSERA_GIT_REF)
  if(NOT DEFINED ${_var} AND DEFINED ENV{${_var}})
    set(${_var} "$ENV{${_var}}")
  endif()
endforeach()
cmake_path(SET _checkout NORMALIZE "${CURRENT_PORT_DIR}/../..")
if(NOT DEFINED TESSERA_GIT_URL)
  if(NOT EXISTS "${_checkout}/include/tessera/tessera.hpp")
    message(FATAL_ERROR "tessera: this port is not inside a tessera checkout (${_checkout}); "
                        "set TESSERA_GIT_URL and TESSERA_GIT_REF")
  endif()
  set(TESSERA_GIT_URL "${_checkout}")
endif()
if(NOT DEFINED TESSERA_GIT_REF)
  find_program(GIT NAMES git git.cmd REQUIRED)
  execute_process(COMMAND "${GIT}" -C "${TESSERA_GIT_URL}" rev-parse HEAD
                  OUTPUT_VARIABLE TESSERA_GIT_REF OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "tessera: cannot read the HEAD commit of ${TESSERA_GIT_URL}; set TESSERA_GIT_REF")
  endif()
endif()
message(STATUS "tessera: source ${TESSERA_GIT_URL} at ${TESSERA_GIT_REF}")

vcpkg_from_git(
  OUT_SOURCE_PATH SOURCE_PATH
  URL "${TESSERA_GIT_URL}"
  REF "${TESSERA_GIT_REF}"
  HEAD_REF HEAD
)

# A feature on: its component is required (configuring fails without what it needs); off: not
# looked for (TESSERA_CUDA=OFF never enables CUDA).
vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    mpi   TESSERA_MPI
    cuda  TESSERA_CUDA
    nccl  TESSERA_NCCL
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DTESSERA_BUILD_TESTS=OFF
    -DTESSERA_BUILD_EXAMPLES=OFF
    -DTESSERA_BUILD_BENCH=OFF
    -DTESSERA_BUILD_TOOLS=OFF
    -DTESSERA_INSTALL=ON
    ${FEATURE_OPTIONS}
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/tessera)
vcpkg_fixup_pkgconfig()

vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
