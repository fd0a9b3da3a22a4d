// Helpers shared by the tests: matchers for tessera::Error and a scratch folder.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <system_error>

#include "tessera/core/error.hpp"

namespace tessera::test {

/// Matches a tessera::Error of the given kind whose what() is exactly "tessera: " + message.
class IsError : public Catch::MatcherBase<Error> {
 public:
  IsError(ErrorKind kind, std::string message) : kind_(kind), message_("tessera: " + std::move(message)) {}
  bool match(const Error& e) const override { return e.kind() == kind_ && e.what() == message_; }
  std::string describe() const override {
    return std::string("is a tessera::Error of kind '") + to_string(kind_) + "' saying: " + message_;
  }

 private:
  ErrorKind kind_;
  std::string message_;
};

/// Matches a tessera::Error of the given kind whose message contains `part`.
class ErrorWith : public Catch::MatcherBase<Error> {
 public:
  ErrorWith(ErrorKind kind, std::string part) : kind_(kind), part_(std::move(part)) {}
  bool match(const Error& e) const override {
    return e.kind() == kind_ && std::string(e.what()).find(part_) != std::string::npos;
  }
  std::string describe() const override {
    return std::string("is a tessera::Error of kind '") + to_string(kind_) + "' containing: " + part_;
  }

 private:
  ErrorKind kind_;
  std::string part_;
};

/// A fresh folder under the system's temporary folder, removed with everything in it at the end.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("tessera_test_" + std::to_string(rd()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] std::string file(const std::string& name) const { return (path / name).string(); }
  /// Writes `content` to a file named `name` in the folder; returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    const std::string p = file(name);
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

}  // namespace tessera::test
