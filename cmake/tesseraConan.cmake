# Loaded by the tessera-config.cmake that Conan's CMakeDeps generates (cmake_build_modules in
# conanfile.py), after the targets: what cpp_info cannot express.
#  - find_package(tessera COMPONENTS <c>) fails, naming <c>, when the Conan package was created
#    without it (options with_mpi, with_cuda, with_nccl), as tessera's own CMake package does.
#  - tessera::cuda carries nvcc's flags: C++20, and OpenMP for nvcc's host compiler.
foreach(_tessera_comp IN LISTS tessera_FIND_COMPONENTS)
  if(TARGET tessera::${_tessera_comp})
    set(tessera_${_tessera_comp}_FOUND TRUE)
  elseif(tessera_FIND_REQUIRED_${_tessera_comp})
    set(tessera_FOUND FALSE)
    string(CONCAT tessera_NOT_FOUND_MESSAGE "tessera: this Conan package has no component '${_tessera_comp}' "
                  "(ask for it with -o tessera/*:with_${_tessera_comp}=True)")
  endif()
endforeach()
unset(_tessera_comp)
if(TARGET tessera::cuda)
  set_property(TARGET tessera::cuda APPEND PROPERTY INTERFACE_COMPILE_OPTIONS
               "$<$<COMPILE_LANGUAGE:CUDA>:-std=c++20;-Xcompiler=-fopenmp>")
endif()
