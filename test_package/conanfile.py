# Conan's test of the tessera package: a consumer that finds it through CMakeDeps
# (find_package(tessera CONFIG REQUIRED), tessera::tessera), trains softmax regression on a small
# synthetic data set and prints its accuracy. With -o tessera/*:with_mpi=True it also asks for the
# component mpi and builds (does not run) a program that includes tessera/mpi.hpp and links tessera::mpi.
import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout


class TesseraTestPackage(ConanFile):
    settings = "os", "arch", "compiler", "build_type"
    test_type = "explicit"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        CMakeDeps(self).generate()
        tc = CMakeToolchain(self)
        tc.cache_variables["TEST_TESSERA_MPI"] = bool(self.dependencies["tessera"].options.with_mpi)
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if can_run(self):
            self.run(os.path.join(self.cpp.build.bindir, "test_package"), env="conanrun")
