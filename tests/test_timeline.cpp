// The timeline: off by default; with TrainerOptions::timeline a fit writes Chrome-trace JSON with
// one track per worker, the engines' spans on it, well formed and properly nested per track.
#include <tessera/partition.hpp>
#include <tessera/tessera.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "partition_support.hpp"
#include "support.hpp"

using namespace tessera;

namespace {

// A minimal JSON reader: enough to take a trace file apart and to refuse a malformed one.
struct Json {
  enum Kind { null, boolean, number, string, array, object } kind = null;
  double num = 0.0;
  std::string str;
  std::vector<Json> items;
  std::map<std::string, Json> fields;
  [[nodiscard]] const Json& at(const std::string& k) const {
    static const Json none;
    const auto it = fields.find(k);
    return it == fields.end() ? none : it->second;
  }
  [[nodiscard]] bool has(const std::string& k) const { return fields.count(k) != 0; }
};

class JsonReader {
 public:
  explicit JsonReader(const std::string& text) : s_(text) {}
  Json document() {
    Json v = value();
    space();
    if (i_ != s_.size()) throw std::runtime_error("trailing characters at " + std::to_string(i_));
    return v;
  }

 private:
  void space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  char peek() {
    space();
    if (i_ >= s_.size()) throw std::runtime_error("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) throw std::runtime_error(std::string("expected ") + c + " at " + std::to_string(i_));
    ++i_;
  }
  std::string text() {
    expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\') {
        ++i_;
        if (i_ >= s_.size()) break;
        if (s_[i_] == 'u') {
          out += '?';
          i_ += 4;
        } else {
          out += s_[i_];
        }
      } else {
        out += s_[i_];
      }
      ++i_;
    }
    expect('"');
    return out;
  }
  Json value() {
    Json v;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::object;
      ++i_;
      if (peek() == '}') return ++i_, v;
      for (;;) {
        std::string k = text();
        expect(':');
        v.fields[k] = value();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Json::array;
      ++i_;
      if (peek() == ']') return ++i_, v;
      for (;;) {
        v.items.push_back(value());
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = Json::string;
      v.str = text();
      return v;
    }
    if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
      v.kind = Json::boolean;
      i_ += s_[i_] == 't' ? 4 : 5;
      return v;
    }
    if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
      return v;
    }
    std::size_t used = 0;
    v.kind = Json::number;
    v.num = std::stod(s_.substr(i_, 40), &used);
    if (used == 0) throw std::runtime_error("bad value at " + std::to_string(i_));
    i_ += used;
    return v;
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Span {
  std::string name;
  double ts, dur;
  int micro;
};

/// The complete ("X") events of a trace file by tid, checked for the fields every event needs.
std::map<int, std::vector<Span>> read_trace(const std::string& path, std::set<std::string>* thread_names = nullptr) {
  const std::string text = slurp(path);
  REQUIRE(text.rfind("{\"traceEvents\":[", 0) == 0);
  const Json doc = JsonReader(text).document();
  REQUIRE(doc.kind == Json::object);
  CHECK(doc.at("displayTimeUnit").str == "ms");
  const Json& events = doc.at("traceEvents");
  REQUIRE(events.kind == Json::array);
  std::map<int, std::vector<Span>> by_tid;
  for (const Json& e : events.items) {
    REQUIRE(e.kind == Json::object);
    REQUIRE(e.at("ph").kind == Json::string);
    REQUIRE(e.at("pid").kind == Json::number);
    REQUIRE(e.at("tid").kind == Json::number);
    const int tid = static_cast<int>(e.at("tid").num);
    if (e.at("ph").str == "M") {
      if (e.at("name").str == "thread_name" && thread_names) thread_names->insert(e.at("args").at("name").str);
      continue;
    }
    REQUIRE(e.at("ph").str == "X");
    REQUIRE(e.at("name").kind == Json::string);
    REQUIRE(e.at("cat").kind == Json::string);
    REQUIRE(e.at("ts").kind == Json::number);
    REQUIRE(e.at("dur").kind == Json::number);
    CHECK(e.at("ts").num >= 0.0);
    CHECK(e.at("dur").num >= 0.0);
    const int micro = e.at("args").has("micro") ? static_cast<int>(e.at("args").at("micro").num) : -1;
    by_tid[tid].push_back({e.at("name").str, e.at("ts").num, e.at("dur").num, micro});
  }
  return by_tid;
}

/// On one track, any two spans are either disjoint or one holds the other (no partial overlap).
bool properly_nested(std::vector<Span> spans) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.ts != b.ts ? a.ts < b.ts : a.dur > b.dur;
  });
  std::vector<double> open;  // ends of the enclosing spans
  constexpr double eps = 1e-3;  // the file's resolution: a nanosecond, in microseconds
  for (const Span& s : spans) {
    while (!open.empty() && open.back() <= s.ts + eps) open.pop_back();
    if (!open.empty() && s.ts + s.dur > open.back() + eps) return false;
    open.push_back(s.ts + s.dur);
  }
  return true;
}

std::size_t count(const std::vector<Span>& spans, const std::string& name) {
  return static_cast<std::size_t>(std::count_if(spans.begin(), spans.end(), [&](const Span& s) { return s.name == name; }));
}

}  // namespace

TEST_CASE("a 2-worker fit with a timeline writes a Chrome trace: compute and gradient sums on both workers",
          "[timeline]") {
  const test::TempDir dir;
  const std::string path = dir.file("fit.json");
  const data::Dataset d = test::make_data(200, 10, 4, Loss::softmax_cross_entropy, 3);
  Model m = test::deep_model(Loss::softmax_cross_entropy);
  Trainer<DataSplit<Random>> t({.batch_size = 10, .epochs = 2, .seed = 1, .workers = 2, .progress = Progress::never,
                                .timeline = path},
                               optim::adam(1e-3));
  const History h = t.fit(m, d);
  CHECK_FALSE(detail::Timeline::on());
  REQUIRE(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::set<std::string> threads;
  const auto by_tid = read_trace(path, &threads);
  REQUIRE(by_tid.size() == 2);
  CHECK(threads == std::set<std::string>{"worker 0", "worker 1"});
  const std::size_t steps = 2 * ((200 + 19) / 20);  // epochs x steps of 20 samples
  for (const auto& [tid, spans] : by_tid) {
    CAPTURE(tid);
    CHECK(count(spans, "compute") == steps);
    CHECK(count(spans, "gradient sum") == steps);
    CHECK(count(spans, "update") == steps);
    CHECK(properly_nested(spans));
  }
  CHECK(h.epochs.size() == 2);
}

TEST_CASE("a pipeline fit's timeline has its sends, receives and micro-batch passes", "[timeline][partition]") {
  const test::TempDir dir;
  const std::string path = dir.file("pipe.json");
  const data::Dataset d = test::make_data(96, 10, 4, Loss::softmax_cross_entropy, 5);
  Model m = test::deep_model(Loss::softmax_cross_entropy);
  Trainer<DataSplit<Random>, Partition<Layerwise>> t(
      {.batch_size = 16, .epochs = 1, .seed = 2, .workers = 3, .micro_batches = 4, .progress = Progress::never,
       .timeline = path},
      optim::momentum(0.05));
  t.fit(m, d);
  const auto by_tid = read_trace(path);
  REQUIRE(by_tid.size() == 3);
  const std::size_t passes = (96 / 16) * 4;  // steps x micro-batches, forward and backward each
  for (const auto& [tid, spans] : by_tid) {
    CAPTURE(tid);
    CHECK(count(spans, "forward") == passes);
    CHECK(count(spans, "backward") == passes);
    // stage 0 receives nothing forward, the last stage nothing backward; the middle one both
    CHECK(count(spans, "receive") == (tid == 1 ? 2 * passes : passes));
    CHECK(count(spans, "send") == (tid == 1 ? 2 * passes : passes));
    CHECK(properly_nested(spans));
    std::set<int> micro;
    for (const Span& s : spans)
      if (s.name == "forward") micro.insert(s.micro);
    CHECK(micro == std::set<int>{0, 1, 2, 3});
  }
}

TEST_CASE("a fit without a timeline writes nothing and the recorder stays off", "[timeline]") {
  const test::TempDir dir;
  const data::Dataset d = test::make_data(60, 10, 4, Loss::softmax_cross_entropy, 3);
  Model m = test::deep_model(Loss::softmax_cross_entropy);
  CHECK_FALSE(detail::Timeline::on());
  Trainer<DataSplit<Random>> t({.batch_size = 10, .epochs = 1, .workers = 2, .progress = Progress::never},
                               optim::sgd(0.1));
  t.fit(m, d);
  CHECK_FALSE(detail::Timeline::on());
  CHECK(detail::Timeline::instance().events().empty());
  CHECK(std::filesystem::is_empty(dir.path));
}

TEST_CASE("a fit stopped at a step boundary still writes its timeline", "[timeline]") {
  const test::TempDir dir;
  const std::string path = dir.file("stopped.json");
  const data::Dataset d = test::make_data(200, 10, 4, Loss::softmax_cross_entropy, 3);
  Model m = test::deep_model(Loss::softmax_cross_entropy);
  // the first boundary comes after one step, the next at the latest at epoch 1's end: a stop
  // asked from the second on always stops the fit before its last epoch, however long the spans
  struct StopSoon {
    mutable int asked = 0;
    bool stop_requested() const { return ++asked > 1; }
  } stop;
  Trainer<DataSplit<Random>> t({.batch_size = 10, .epochs = 3, .workers = 2, .progress = Progress::never,
                                .timeline = path},
                               optim::sgd(0.1));
  const History h = t.fit(m, d, stop);
  CHECK(h.interrupted);
  const auto by_tid = read_trace(path);
  REQUIRE(by_tid.size() == 2);
  for (const auto& [tid, spans] : by_tid) CHECK(count(spans, "compute") > 0);
  CHECK_FALSE(detail::Timeline::on());
}

TEST_CASE("under MPI each rank names its own timeline file", "[timeline]") {
  using detail::Timeline;
  CHECK(Timeline::file_for("run.json", 0, 1) == "run.json");
  CHECK(Timeline::file_for("out/run.json", 1, 2) == "out/run.rank1.json");
  CHECK(Timeline::file_for("run", 3, 4) == "run.rank3.json");
  // off, a span records nothing
  { const detail::TimelineSpan s("nothing", std::size_t{0}); }
  CHECK(Timeline::instance().events().empty());
}
