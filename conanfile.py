# Conan 2 recipe for tessera: a header-only library whose dependencies (Thrust, OpenBLAS, OpenMP,
# and MPI, CUDA, NCCL for the options) are the system's, not Conan packages. `conan create .`
# copies the headers; package_info() finds the dependencies on the consumer's machine, as the
# CMake package does, and describes them with cpp_info so that any generator works.
# find_package(tessera) through CMakeDeps gives tessera::tessera and, per option, tessera::mpi,
# tessera::cuda and tessera::nccl. See docs/install.md.
import glob
import os
import re
import shutil
import subprocess

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load

required_conan_version = ">=2.0"


class TesseraConan(ConanFile):
    name = "tessera"
    description = "Parallel training of gradient-based models, header-only C++20: threads, Open MPI, CUDA + NCCL"
    license = "Apache-2.0"
    topics = ("machine-learning", "parallel", "mpi", "cuda", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"with_mpi": [True, False], "with_cuda": [True, False], "with_nccl": [True, False]}
    default_options = {"with_mpi": False, "with_cuda": False, "with_nccl": False}
    exports_sources = "include/*", "cmake/*", "CMakeLists.txt", "LICENSE"
    no_copy_source = True

    def set_version(self):
        # the version of project(tessera VERSION x.y.z) in CMakeLists.txt: one version, one place
        text = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        match = re.search(r"project\(tessera\s+VERSION\s+([0-9.]+)", text)
        if not match:
            raise ConanInvalidConfiguration("tessera: no project(tessera VERSION ...) in CMakeLists.txt")
        self.version = match.group(1)

    def validate(self):
        check_min_cppstd(self, 20)
        if self.options.with_nccl and not self.options.with_cuda:
            raise ConanInvalidConfiguration("tessera: with_nccl needs with_cuda (Reduce<NcclAllreduce> runs on Device<Cuda>)")
        if self.settings.os != "Linux":
            raise ConanInvalidConfiguration("tessera: built and tested on Linux only")

    def package_id(self):
        # header-only: one package for every setting and option (the options change package_info only)
        self.info.clear()

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))
        copy(self, "tesseraConan.cmake", os.path.join(self.source_folder, "cmake"),
             os.path.join(self.package_folder, "lib", "cmake"))

    # -- the system's dependencies, found where the package is used --------------------------------

    def _multiarch(self):
        return {"x86_64": "x86_64-linux-gnu", "armv8": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu"}.get(
            str(self.settings.arch), "")

    def _conf_path(self, name):
        value = self.conf.get(f"user.tessera:{name}", default=None)
        return str(value) if value else None

    def _cuda_root(self):
        for root in (self._conf_path("cuda_root"), os.environ.get("CUDAToolkit_ROOT"), os.environ.get("CUDA_PATH"),
                     "/usr/local/cuda"):
            if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")):
                return root
        return None

    def _thrust_include_dir(self):
        # as cmake/tesseraDependencies.cmake: the CUDA toolkit's CCCL first, then a standalone one,
        # then Debian's libthrust-dev in /usr/include (the compiler's own path: nothing to add)
        given = self._conf_path("thrust_include_dir")
        if given:
            return given
        roots = [os.environ.get("CCCL_ROOT"), os.environ.get("CUDAToolkit_ROOT"), os.environ.get("CUDA_PATH"),
                 "/usr/local/cuda"]
        for root in filter(None, roots):
            for suffix in ("include/cccl", "cccl", "include"):
                candidate = os.path.join(root, suffix)
                if os.path.isfile(os.path.join(candidate, "thrust", "version.h")):
                    return candidate
        if os.path.isfile("/usr/include/thrust/version.h"):
            return None
        raise ConanInvalidConfiguration("tessera: Thrust not found: install the CUDA toolkit or Debian's libthrust-dev, "
                                        "or set user.tessera:thrust_include_dir")

    def _cblas(self):
        # OpenBLAS, its OpenMP build first (it shares OpenMP's threads instead of competing for the
        # cores); returns (include dir or None, library dir or None, library name)
        inc, lib = self._conf_path("cblas_include_dir"), self._conf_path("cblas_library")
        if lib:
            name = re.sub(r"^lib|\.(so|a)(\.[0-9.]*)?$", "", os.path.basename(lib))
            return inc, os.path.dirname(lib), name
        arch = self._multiarch()
        for flavour in ("openblas-openmp", "openblas-pthread"):
            inc_dir = f"/usr/include/{arch}/{flavour}"
            lib_dir = f"/usr/lib/{arch}/{flavour}"
            if os.path.isfile(os.path.join(inc_dir, "cblas.h")) and glob.glob(os.path.join(lib_dir, "libopenblas.so*")):
                return inc_dir, lib_dir, "openblas"
        return inc, None, "openblas"  # the compiler's own paths (Debian's alternatives, /usr/lib/libopenblas.so)

    def _mpi(self):
        # Open MPI's wrapper says what it adds (Debian: libopenmpi-dev)
        wrapper = self._conf_path("mpicxx") or shutil.which("mpicxx")
        if not wrapper:
            raise ConanInvalidConfiguration("tessera: with_mpi needs MPI's mpicxx (Debian: libopenmpi-dev); "
                                            "or set user.tessera:mpicxx")

        def showme(what):
            out = subprocess.run([wrapper, f"--showme:{what}"], capture_output=True, text=True, check=True).stdout
            return out.split()
        return showme("incdirs"), showme("libdirs"), showme("libs")

    def _nccl(self, cuda_root):
        roots = [self._conf_path("nccl_root"), os.environ.get("NCCL_ROOT"), cuda_root]
        for root in filter(None, roots):
            header = os.path.join(root, "include", "nccl.h")
            for libdir in ("lib", "lib64"):
                path = os.path.join(root, libdir)
                if os.path.isfile(header) and os.path.exists(os.path.join(path, "libnccl.so")):
                    return os.path.join(root, "include"), path, "nccl"
                if os.path.isfile(header) and os.path.exists(os.path.join(path, "libnccl.so.2")):
                    return os.path.join(root, "include"), path, ":libnccl.so.2"  # the wheel's layout
        raise ConanInvalidConfiguration("tessera: with_nccl: nccl.h and libnccl not found; set NCCL_ROOT or "
                                        "user.tessera:nccl_root")

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "tessera")
        # the aggregate of all components; consumers link the components' targets below
        self.cpp_info.set_property("cmake_target_name", "tessera::tessera_all")
        self.cpp_info.set_property("pkg_config_name", "tessera_all")

        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "tessera::tessera")
        core.set_property("pkg_config_name", "tessera")
        core.includedirs = ["include"]
        thrust = self._thrust_include_dir()
        if thrust:
            core.includedirs.append(thrust)
        blas_inc, blas_lib, blas_name = self._cblas()
        if blas_inc:
            core.includedirs.append(blas_inc)
        core.libdirs = [blas_lib] if blas_lib else []
        core.system_libs = [blas_name, "m"]
        core.cxxflags = ["-fopenmp"]
        core.sharedlinkflags = ["-fopenmp", "-pthread"]
        core.exelinkflags = ["-fopenmp", "-pthread"]
        core.bindirs = []
        # a build module, loaded after the targets: checks the requested COMPONENTS, adds the nvcc
        # flags of tessera::cuda (cmake/tesseraConan.cmake)
        self.cpp_info.set_property("cmake_build_modules", [os.path.join("lib", "cmake", "tesseraConan.cmake")])

        if self.options.with_mpi:
            incdirs, libdirs, libs = self._mpi()
            mpi = self.cpp_info.components["mpi"]
            mpi.set_property("cmake_target_name", "tessera::mpi")
            mpi.set_property("pkg_config_name", "tessera-mpi")
            mpi.requires = ["core"]
            mpi.includedirs = incdirs
            mpi.libdirs = libdirs
            mpi.system_libs = libs
            mpi.bindirs = []

        if self.options.with_cuda:
            root = self._cuda_root()
            if not root:
                raise ConanInvalidConfiguration("tessera: with_cuda: no CUDA toolkit (CUDA_PATH, /usr/local/cuda); "
                                                "or set user.tessera:cuda_root")
            libdir = next((os.path.join(root, d) for d in ("lib64", "lib", "targets/x86_64-linux/lib")
                           if glob.glob(os.path.join(root, d, "libcudart.so*"))), os.path.join(root, "lib64"))
            cuda = self.cpp_info.components["cuda"]
            cuda.set_property("cmake_target_name", "tessera::cuda")
            cuda.set_property("pkg_config_name", "tessera-cuda")
            cuda.requires = ["core"]
            cuda.includedirs = [os.path.join(root, "include")]
            cuda.libdirs = [libdir]
            cuda.system_libs = ["cudart", "cublas"]
            cuda.bindirs = []
            if self.options.with_nccl:
                nccl_inc, nccl_libdir, nccl_lib = self._nccl(root)
                nccl = self.cpp_info.components["nccl"]
                nccl.set_property("cmake_target_name", "tessera::nccl")
                nccl.set_property("pkg_config_name", "tessera-nccl")
                nccl.requires = ["cuda"]
                nccl.includedirs = [nccl_inc]
                nccl.libdirs = [nccl_libdir]
                nccl.system_libs = [nccl_lib]
                nccl.bindirs = []
                if self.options.with_mpi:  # one process per GPU under mpirun, the NCCL id broadcast over MPI
                    nccl.requires.append("mpi")
                    nccl.defines = ["TESSERA_NCCL_WITH_MPI=1"]
