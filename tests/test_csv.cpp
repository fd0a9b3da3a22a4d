// CSV reader: values, names, label selection, line endings, quoting, and every error with its
// exact file:line:column.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "tessera/data/csv.hpp"

using namespace tessera;
using data::CsvOptions;
using data::parse_csv;

using test::IsError;
using test::TempDir;

namespace {

IsError parse_error(std::string message) { return {ErrorKind::parse, std::move(message)}; }


const char* const small = "a,b,label\n0.1,-2.5,1\n1e-3,3,0\n7,-0,2\n";

}  // namespace

TEST_CASE("parse_csv reads features and labels and names exactly", "[csv]") {
  const data::Dataset d = parse_csv(small, "small.csv");
  REQUIRE(d.rows() == 3);
  REQUIRE(d.cols() == 2);
  CHECK(d.target_dim == 1);
  CHECK(d.features.values() == std::vector<float>{0.1f, -2.5f, 1e-3f, 3.0f, 7.0f, -0.0f});
  CHECK(std::signbit(d.features(2, 1)));
  CHECK(d.targets == std::vector<float>{1, 0, 2});
  CHECK(d.feature_names == std::vector<std::string>{"a", "b"});
  CHECK(d.target_name == "label");
  CHECK(d.num_classes() == 3);
}

TEST_CASE("the label column is chosen by name or by index or as the last column", "[csv]") {
  SECTION("by name") {
    const auto d = parse_csv(small, "s.csv", {.label = "b"});
    CHECK(d.target_name == "b");
    CHECK(d.feature_names == std::vector<std::string>{"a", "label"});
    CHECK(d.targets == std::vector<float>{-2.5f, 3.0f, -0.0f});
    CHECK(d.features.values() == std::vector<float>{0.1f, 1, 1e-3f, 0, 7, 2});
  }
  SECTION("by std::string name") {
    const auto d = parse_csv(small, "s.csv", {.label = std::string("a")});
    CHECK(d.target_name == "a");
    CHECK(d.targets == std::vector<float>{0.1f, 1e-3f, 7.0f});
  }
  SECTION("by index") {
    const auto d = parse_csv(small, "s.csv", {.label = 0});
    CHECK(d.target_name == "a");
    CHECK(d.feature_names == std::vector<std::string>{"b", "label"});
    CHECK(d.features.values() == std::vector<float>{-2.5f, 1, 3, 0, -0.0f, 2});
    const auto e = parse_csv(small, "s.csv", {.label = std::size_t{1}});
    CHECK(e.target_name == "b");
  }
  SECTION("last") {
    const auto d = parse_csv(small, "s.csv", {.label = data::last_column});
    CHECK(d.target_name == "label");
    CHECK(d.targets == std::vector<float>{1, 0, 2});
  }
  SECTION("a negative index is refused") {
    CHECK_THROWS_MATCHES(data::ColumnRef(-1), Error, IsError(ErrorKind::invalid_argument, "column index -1 is negative"));
  }
}

TEST_CASE("without a header the columns are named x0..xN and y", "[csv]") {
  const auto d = parse_csv("1,2,3\n4,5,6\n", "n.csv", {.header = false});
  CHECK(d.rows() == 2);
  CHECK(d.features.values() == std::vector<float>{1, 2, 4, 5});
  CHECK(d.targets == std::vector<float>{3, 6});
  CHECK(d.feature_names == std::vector<std::string>{"x0", "x1"});
  CHECK(d.target_name == "y");
  const auto e = parse_csv("1,2,3\n4,5,6", "n.csv", {.label = 1, .header = false});
  CHECK(e.targets == std::vector<float>{2, 5});
  CHECK(e.features.values() == std::vector<float>{1, 3, 4, 6});
}

TEST_CASE("line endings / blank lines / spaces / quoting / delimiters", "[csv]") {
  const std::vector<float> x{0.1f, -2.5f, 1e-3f, 3.0f, 7.0f, -0.0f}, y{1, 0, 2};
  auto same = [&](const data::Dataset& d) {
    CHECK(d.features.values() == x);
    CHECK(d.targets == y);
    CHECK(d.feature_names == std::vector<std::string>{"a", "b"});
    CHECK(d.target_name == "label");
  };
  SECTION("CRLF") { same(parse_csv("a,b,label\r\n0.1,-2.5,1\r\n1e-3,3,0\r\n7,-0,2\r\n", "c.csv")); }
  SECTION("no trailing newline") { same(parse_csv("a,b,label\n0.1,-2.5,1\n1e-3,3,0\n7,-0,2", "c.csv")); }
  SECTION("CRLF and no trailing newline") { same(parse_csv("a,b,label\r\n0.1,-2.5,1\r\n1e-3,3,0\r\n7,-0,2", "c.csv")); }
  SECTION("blank lines at the end and in between") {
    same(parse_csv("a,b,label\n0.1,-2.5,1\n\n1e-3,3,0\n7,-0,2\n\n  \r\n\n", "c.csv"));
  }
  SECTION("spaces and tabs around fields, a leading '+', quoted numbers") {
    same(parse_csv(" a , b ,\tlabel\n 0.1 ,\t-2.5,+1\n1e-3 , \"3\" ,0 \n+7,-0 ,\t2\t\n", "c.csv"));
  }
  SECTION("quoted header names") {
    same(parse_csv("\"a\",\"b\",\"label\"\n0.1,-2.5,1\n1e-3,3,0\n7,-0,2\n", "c.csv"));
    const auto d = parse_csv(" \"x, y\" ,\"say \"\"hi\"\"\",\"label\"\n1,2,3\n", "q.csv");
    CHECK(d.feature_names == std::vector<std::string>{"x, y", "say \"hi\""});
    CHECK(d.target_name == "label");
    CHECK(parse_csv("\"x, y\",t\n1,2\n", "q.csv", {.label = "x, y"}).targets == std::vector<float>{1});
  }
  SECTION("a UTF-8 byte-order mark") { same(parse_csv("\xEF\xBB\xBF" "a,b,label\n0.1,-2.5,1\n1e-3,3,0\n7,-0,2\n", "c.csv")); }
  SECTION("semicolons and tabs") {
    same(parse_csv("a;b;label\n0.1;-2.5;1\n1e-3;3;0\n7;-0;2\n", "c.csv", {.delimiter = ';'}));
    same(parse_csv("a\tb\tlabel\n0.1\t-2.5\t1\n1e-3\t3\t0\n7\t-0\t2\n", "c.tsv", {.delimiter = '\t'}));
  }
  SECTION("subnormal and underflowing numbers") {
    const auto d = parse_csv("a,b\n1e-40,1e-50\n", "c.csv");
    CHECK(d.features(0, 0) == 1e-40f);
    CHECK(d.targets[0] == 0.0f);
  }
}

TEST_CASE("non-finite values are refused by default and accepted with allow_non_finite", "[csv]") {
  const std::string text = "a,b,c\nnan,NaN,inf\n-inf,Infinity,-INF\n1,2,3\n";
  const auto d = parse_csv(text, "nf.csv", {.allow_non_finite = true});
  CHECK(std::isnan(d.features(0, 0)));
  CHECK(std::isnan(d.features(0, 1)));
  CHECK(d.targets[0] == INFINITY);
  CHECK(d.features(1, 0) == -INFINITY);
  CHECK(d.features(1, 1) == INFINITY);
  CHECK(d.targets[1] == -INFINITY);
  CHECK_THROWS_MATCHES(parse_csv(text, "nf.csv"), Error,
                       parse_error("nf.csv:2:1: NaN is not allowed (pass allow_non_finite to accept it)"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n1,2.5, -inf\n", "nf.csv"), Error,
                       parse_error("nf.csv:3:8: -infinity is not allowed (pass allow_non_finite to accept it)"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n1,Inf,0\n", "nf.csv"), Error,
                       parse_error("nf.csv:3:3: infinity is not allowed (pass allow_non_finite to accept it)"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n1,1.5,NaN\n", "x.csv"), Error,
                       parse_error("x.csv:3:7: NaN is not allowed (pass allow_non_finite to accept it)"));
}

TEST_CASE("num_classes requires integer labels below num_classes", "[csv]") {
  const CsvOptions o{.num_classes = 10};
  CHECK(parse_csv("a,y\n1,0\n2,9\n3,4.0\n", "c.csv", o).targets == std::vector<float>{0, 9, 4});
  const std::string head = "a,y\n1,2\n1,3\n2,4\n3,5\n4,6\n";
  CHECK_THROWS_MATCHES(parse_csv(head + "1234567890.25,12\n", "x.csv", o), Error,
                       parse_error("x.csv:7:15: label 12 out of range: expected an integer class in [0, 10)"));
  CHECK_THROWS_MATCHES(parse_csv("a,y\n1,-1\n", "x.csv", o), Error,
                       parse_error("x.csv:2:3: label -1 out of range: expected an integer class in [0, 10)"));
  CHECK_THROWS_MATCHES(parse_csv("a,y\n1, 1.5 \n", "x.csv", o), Error,
                       parse_error("x.csv:2:4: label 1.5 out of range: expected an integer class in [0, 10)"));
  CHECK_THROWS_MATCHES(parse_csv("y,a\n10,1\n", "x.csv", {.label = "y", .num_classes = 10}), Error,
                       parse_error("x.csv:2:1: label 10 out of range: expected an integer class in [0, 10)"));
  CHECK_THROWS_MATCHES(parse_csv("a,y\n1,nan\n", "x.csv", {.allow_non_finite = true, .num_classes = 10}), Error,
                       parse_error("x.csv:2:3: label nan out of range: expected an integer class in [0, 10)"));
}

TEST_CASE("malformed numbers and empty fields are located exactly", "[csv][errors]") {
  std::string text = "a,b,c\n";
  for (int i = 0; i < 10; ++i) text += "1,2,3\n";
  CHECK_THROWS_MATCHES(parse_csv(text + "12345,abc,1\n", "data/x.csv"), Error,
                       parse_error("data/x.csv:12:7: expected a number, got \"abc\""));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1.5x,2,3\n", "x.csv"), Error, parse_error("x.csv:2:1: expected a number, got \"1.5x\""));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,  1 2\n", "x.csv"), Error, parse_error("x.csv:2:7: expected a number, got \"1 2\""));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,0x10,3\n", "x.csv"), Error, parse_error("x.csv:2:3: expected a number, got \"0x10\""));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,+-2,3\n", "x.csv"), Error, parse_error("x.csv:2:3: expected a number, got \"+-2\""));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n4,,6\n", "x.csv"), Error, parse_error("x.csv:3:3: empty field, expected a number"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\r\n1,2,3\r\n4,5,  \r\n", "x.csv"), Error,
                       parse_error("x.csv:3:7: empty field, expected a number"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,1e50,3\n", "x.csv"), Error,
                       parse_error("x.csv:2:3: number \"1e50\" is outside the float32 range"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,-1e-50x\n", "x.csv"), Error,
                       parse_error("x.csv:2:5: expected a number, got \"-1e-50x\""));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,\"\"\n", "x.csv"), Error, parse_error("x.csv:2:5: expected a number, got \"\"\"\""));
  // line numbers count blank lines and CRLF lines; columns count characters, not bytes
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\r\n\r\n1,2,3\r\n\r\n\r\n1,2,x\r\n", "x.csv"), Error,
                       parse_error("x.csv:6:5: expected a number, got \"x\""));
  CHECK_THROWS_MATCHES(parse_csv("\"\xC3\xBC\xC3\xB1\xC3\xAF\",b,\"c\n1,2,3\n", "x.csv"), Error,
                       parse_error("x.csv:1:9: unterminated quoted name, expected a closing '\"'"));
}

TEST_CASE("ragged rows name the field count and where the expected count came from", "[csv][errors]") {
  std::string header;
  for (int i = 0; i < 64; ++i) header.append("p").append(std::to_string(i)).append(",");
  header += "digit\n";
  std::string row;
  for (int i = 0; i < 65; ++i) row += (i ? ",1" : "1");
  const std::string text = header + row + "\n" + row + "\n" + row + "\n1,2,3,4\n" + row + "\n";
  CHECK_THROWS_MATCHES(parse_csv(text, "x.csv"), Error,
                       parse_error("x.csv:5:1: ragged row: 4 fields, expected 65 (as in the header at line 1)"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n1,2,3,4\n", "x.csv"), Error,
                       parse_error("x.csv:3:1: ragged row: 4 fields, expected 3 (as in the header at line 1)"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n1,2,3,\n", "x.csv"), Error,
                       parse_error("x.csv:3:1: ragged row: 4 fields, expected 3 (as in the header at line 1)"));
  // a short row is reported as ragged, not as the empty or malformed field it also has
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,\n", "x.csv"), Error,
                       parse_error("x.csv:2:1: ragged row: 2 fields, expected 3 (as in the header at line 1)"));
  CHECK_THROWS_MATCHES(parse_csv("\n\n1,2,3\n1,2\n", "x.csv", {.header = false}), Error,
                       parse_error("x.csv:4:1: ragged row: 2 fields, expected 3 (as in the first row at line 3)"));
}

TEST_CASE("empty files and header-only files and bad headers", "[csv][errors]") {
  CHECK_THROWS_MATCHES(parse_csv("", "x.csv"), Error, parse_error("x.csv: empty file, expected a header row"));
  CHECK_THROWS_MATCHES(parse_csv(" \r\n\n\t\n", "x.csv"), Error, parse_error("x.csv: empty file, expected a header row"));
  CHECK_THROWS_MATCHES(parse_csv("", "x.csv", {.header = false}), Error, parse_error("x.csv: empty file, expected a data row"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n", "x.csv"), Error,
                       parse_error("x.csv: no data rows, expected at least one after the header at line 1"));
  CHECK_THROWS_MATCHES(parse_csv("\na,b,c\r\n\r\n", "x.csv"), Error,
                       parse_error("x.csv: no data rows, expected at least one after the header at line 2"));
  CHECK_THROWS_MATCHES(parse_csv("a,,c\n1,2,3\n", "x.csv"), Error, parse_error("x.csv:1:3: empty column name, expected a name"));
  CHECK_THROWS_MATCHES(parse_csv("a,\"b\" c,d\n1,2,3\n", "x.csv"), Error,
                       parse_error("x.csv:1:7: expected ',' or the end of the line after a quoted name"));
  CHECK_THROWS_MATCHES(parse_csv("label\n1\n", "x.csv"), Error,
                       parse_error("x.csv:1: only 1 column, expected at least 2 (the features and the label)"));
}

TEST_CASE("a label column that does not exist", "[csv][errors]") {
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n", "x.csv", {.label = "target"}), Error,
                       parse_error("x.csv:1: no column named \"target\" in the header (columns: a, b, c)"));
  CHECK_THROWS_MATCHES(parse_csv("a,b,c\n1,2,3\n", "x.csv", {.label = 3}), Error,
                       parse_error("x.csv:1: label column 3 is past the last column: the header has 3 columns (indices 0 to 2)"));
  CHECK_THROWS_MATCHES(parse_csv("1,2\n", "x.csv", {.label = 7, .header = false}), Error,
                       parse_error("x.csv:1: label column 7 is past the last column: the first row has 2 columns (indices 0 to 1)"));
  CHECK_THROWS_MATCHES(parse_csv("1,2\n", "x.csv", {.label = "y", .header = false}), Error,
                       parse_error("x.csv:1: label column \"y\" given by name, but the file is read without a header; give its index"));
  CHECK_THROWS_MATCHES(parse_csv("y,a,y\n1,2,3\n", "x.csv", {.label = "y"}), Error,
                       parse_error("x.csv:1: column name \"y\" appears more than once in the header"));
  std::string many;
  for (int i = 0; i < 25; ++i) many.append("c").append(std::to_string(i)).append(i < 24 ? "," : "\n");
  CHECK_THROWS_WITH(parse_csv(many + "1", "x.csv", {.label = "t"}),
                    Catch::EndsWith("(columns: c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, "
                                    "c16, c17, c18, c19, ... (25 in all))"));
}

TEST_CASE("read_csv reads a file and names it in messages", "[csv]") {
  const TempDir dir;
  const std::string good = dir.write("good.csv", small);
  const auto d = data::read_csv(good, {.label = data::last_column, .num_classes = 3});
  CHECK(d.targets == std::vector<float>{1, 0, 2});
  CHECK(d.feature_names == std::vector<std::string>{"a", "b"});
  const std::string bad = dir.write("bad.csv", "a,b\r\n1,2\r\n3,oops\r\n");
  CHECK_THROWS_MATCHES(data::read_csv(bad), Error, parse_error(bad + ":3:3: expected a number, got \"oops\""));
  const std::string missing = (dir.path / "missing.csv").string();
  CHECK_THROWS_MATCHES(data::read_csv(missing), Error,
                       IsError(ErrorKind::io, missing + ": cannot open for reading (no such file)"));
  CHECK_THROWS_MATCHES(data::read_csv(dir.path.string()), Error,
                       IsError(ErrorKind::io, dir.path.string() + ": cannot open for reading"));
  CHECK_THROWS_MATCHES(data::read_csv(dir.write("empty.csv", "")), Error,
                       parse_error((dir.path / "empty.csv").string() + ": empty file, expected a header row"));
}

TEST_CASE("a 1797 x 65 file parses at once and exactly", "[csv]") {
  std::mt19937 rng(7);
  std::ostringstream s;
  for (int c = 0; c < 64; ++c) s << "pixel_" << c << ',';
  s << "digit\n";
  std::vector<float> expect;
  for (int r = 0; r < 1797; ++r) {
    for (int c = 0; c < 64; ++c) {
      const auto v = static_cast<int>(rng() % 17);
      expect.push_back(float(v));
      s << v << ',';
    }
    s << r % 10 << "\r\n";
  }
  const std::string text = s.str();
  const auto t0 = std::chrono::steady_clock::now();
  const auto d = parse_csv(text, "digits.csv", {.num_classes = 10});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(seconds < 1.0);
  REQUIRE(d.rows() == 1797);
  REQUIRE(d.cols() == 64);
  CHECK(d.features.values() == expect);
  CHECK(d.targets[1796] == 6.0f);
  CHECK(d.feature_names.back() == "pixel_63");
  CHECK(d.num_classes() == 10);
}

TEST_CASE("throughput on a large file", "[.][csv][perf]") {
  std::ostringstream s;
  for (int c = 0; c < 20; ++c) s << 'f' << c << ',';
  s << "y\n";
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-100, 100);
  while (s.tellp() < 100'000'000) {
    for (int c = 0; c < 20; ++c) s << u(rng) << ',';
    s << rng() % 10 << '\n';
  }
  const std::string text = s.str();
  const auto t0 = std::chrono::steady_clock::now();
  const auto d = parse_csv(text, "big.csv");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN(static_cast<double>(text.size()) / 1e6 << " MB, " << d.rows() << " rows in " << seconds << " s");
  CHECK(seconds < 5.0);
}

TEST_CASE("write_csv writes what read_csv reads back", "[csv]") {
  tessera::test::TempDir dir;
  Matrix x(3, 2);
  for (std::size_t i = 0; i < 6; ++i) x.data()[i] = 0.5f * static_cast<float>(i) - 1.0f;
  data::Dataset d(std::move(x), {0.0f, 2.0f, 1.0f});
  d.feature_names = {"a", "b"};
  d.target_name = "y";
  const std::string path = (dir.path / "d.csv").string();
  data::write_csv(d, path);
  const data::Dataset back = data::read_csv(path, {.label = data::last_column});
  CHECK(back.feature_names == d.feature_names);
  CHECK(back.targets == d.targets);
  CHECK(std::equal(back.x().data, back.x().data + 6, d.x().data));
  CHECK_THROWS_AS(data::write_csv(d, (dir.path / "no" / "such" / "d.csv").string()), Error);
}
