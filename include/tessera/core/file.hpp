// tessera/core/file.hpp - bounded reading of untrusted files and atomic writing.
//
// Readers see their input through a byte source whose size is known before anything is read or
// allocated: a regular file (FileSource) or bytes in memory (MemorySource, for parse_* functions
// and the fuzz targets). Every count a header gives is checked against that size before it sizes
// an allocation. Writers go through AtomicFile: a temporary file beside the target, flushed to
// disk and renamed over it at the end, removed on any failure.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "tessera/core/error.hpp"

namespace tessera::detail {

/// Bytes in memory, named for messages.
class MemorySource {
 public:
  MemorySource(std::span<const unsigned char> bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {}
  [[nodiscard]] std::uint64_t size() const noexcept { return bytes_.size(); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Copies bytes [at, at + n); the caller has checked the range against size().
  void read(std::uint64_t at, void* to, std::size_t n) const {
    require(at <= bytes_.size() && n <= bytes_.size() - at, ErrorKind::format,
            name_ + ": truncated: needs bytes up to " + std::to_string(at + n) + ", has " + std::to_string(bytes_.size()));
    if (n) std::memcpy(to, bytes_.data() + at, n);
  }

 private:
  std::span<const unsigned char> bytes_;
  std::string name_;
};

/// A regular file opened for reading. Refuses (ErrorKind::io) a missing file, a directory, and
/// anything that is not a regular file (a device such as /dev/zero, a pipe, a socket): their size
/// is not known before reading, so no reader could bound what it allocates.
class FileSource {
 public:
  explicit FileSource(const std::string& path) : name_(path) {
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(st))
      fail(ErrorKind::io, path + ": cannot open for reading (no such file)");
    if (std::filesystem::is_directory(st)) fail(ErrorKind::io, path + ": cannot open for reading");
    if (!std::filesystem::is_regular_file(st))
      fail(ErrorKind::io, path + ": cannot open for reading: not a regular file (a device, a pipe or a socket); tessera "
                                 "reads data and models from regular files only, whose size it checks first");
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) fail(ErrorKind::io, path + ": cannot open for reading: " + std::strerror(errno));
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) {
      std::fclose(f_);
      fail(ErrorKind::io, path + ": cannot get the file size: " + ec.message());
    }
    size_ = size;
  }
  ~FileSource() {
    if (f_) std::fclose(f_);
  }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Reads bytes [at, at + n); the caller has checked the range against size(). A file that
  /// shrinks meanwhile is a read failure, never a short buffer.
  void read(std::uint64_t at, void* to, std::size_t n) const {
    require(at <= size_ && n <= size_ - at, ErrorKind::format,
            name_ + ": truncated: needs bytes up to " + std::to_string(at + n) + ", the file has " + std::to_string(size_));
    if (n == 0) return;
    const bool placed = at == pos_ || std::fseek(f_, static_cast<long>(at), SEEK_SET) == 0;
    const std::size_t got = placed ? std::fread(to, 1, n, f_) : 0;
    pos_ = placed ? at + got : UINT64_MAX;
    require(got == n, ErrorKind::io, name_ + ": read failed at byte " + std::to_string(at + got) +
                                         (std::ferror(f_) ? std::string(": ") + std::strerror(errno) : " (the file shrank?)"));
  }

 private:
  std::string name_;
  std::FILE* f_ = nullptr;
  std::uint64_t size_ = 0;
  mutable std::uint64_t pos_ = 0;
};

/// A file written atomically: bytes go to `path`.tmp, which commit() flushes to disk and renames
/// to `path`. Destroyed without commit() (an exception on the way), the temporary file is
/// removed; `path` keeps what it held before.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail(ErrorKind::io, path_ + ": cannot open " + tmp_ + " for writing");
  }
  ~AtomicFile() {
    if (f_) std::fclose(f_);
    if (!committed_) {
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t n) {
    if (n && std::fwrite(data, 1, n, f_) != n)
      fail(ErrorKind::io, path_ + ": write failed (disk full?): " + std::strerror(errno));
  }
  /// Flushes, syncs and renames the temporary file to the real name.
  void commit() {
    bool ok = std::fflush(f_) == 0;
#if defined(__unix__) || defined(__APPLE__)
    ok = ok && ::fsync(fileno(f_)) == 0;
#endif
    const int err = errno;
    ok = std::fclose(f_) == 0 && ok;
    f_ = nullptr;
    if (!ok) fail(ErrorKind::io, path_ + ": write failed (disk full?): " + std::strerror(err));
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) fail(ErrorKind::io, path_ + ": cannot move the written file into place: " + ec.message());
    committed_ = true;
  }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

}  // namespace tessera::detail
