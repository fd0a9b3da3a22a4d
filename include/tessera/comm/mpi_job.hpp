// tessera/comm/mpi_job.hpp - the job channel of an MPI job: one duplicate of MPI_COMM_WORLD that
// mpi::Environment opens at start, with receives always posted for three kinds of notice that any
// rank may send any other at any time:
//   failure    - a rank stops with an error: every rank waiting anywhere (any communicator) throws;
//   departure  - a rank has reached the end of its program (it may have caught an error and
//                returned early: its last tessera error travels with the notice); a rank waiting
//                in an operation of a communicator that includes it stops after a short grace,
//                since that rank can take part in nothing more;
//   census     - a rank that timed out asks what every other rank is doing; ranks inside a tessera
//                wait answer at once, so the ranks that do not answer are the ones that did not
//                arrive (stuck in their own work, or gone), and the time-out names them.
// Every wait of mpi::Communicator polls this channel; it never blocks.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::mpi::detail {

constexpr int notice_length = 1024;  ///< bytes of a notice, message included
/// Tags of the job channel, far from the tags collectives and exchanges use on other communicators.
constexpr int failure_tag = 30001, departure_tag = 30002, probe_tag = 30003, answer_tag = 30004;

/// One posted receive of a notice, reposted after each arrival.
struct PostedNotice {
  MPI_Request request = MPI_REQUEST_NULL;
  char text[notice_length] = {};
};

class JobChannel {
 public:
  explicit JobChannel(MPI_Comm world) {
    MPI_Comm_dup(world, &comm_);  // blocking: every rank constructs its Environment before anything else
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    for (int k = 0; k < 3; ++k) post(k);
  }
  ~JobChannel() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (finalised || freed_) return;
    for (auto& p : posted_) {
      MPI_Cancel(&p.request);
      MPI_Wait(&p.request, MPI_STATUS_IGNORE);
    }
    for (auto& s : sends_) MPI_Wait(&s.request, MPI_STATUS_IGNORE);
    MPI_Comm_free(&comm_);
  }
  JobChannel(const JobChannel&) = delete;
  JobChannel& operator=(const JobChannel&) = delete;

  [[nodiscard]] MPI_Comm comm() const noexcept { return comm_; }
  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  /// After a failure the job aborts: nothing of the channel may be freed (a pending receive could block).
  void abandon() noexcept { freed_ = true; }

  /// Takes what has arrived, without waiting: records failures and departures, and answers every
  /// census probe with `doing()` (what this rank waits in).
  template <class Doing>
  void poll(Doing&& doing) {
    reap();
    for (int k = 0; k < 3; ++k) {
      for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Test(&posted_[k].request, &flag, &st) != MPI_SUCCESS || !flag) break;
        posted_[k].text[notice_length - 1] = '\0';
        const std::string text = posted_[k].text;
        if (k == 0 && failed_from_ < 0) {
          failed_from_ = st.MPI_SOURCE;
          failure_ = text;
        } else if (k == 1) {
          departed_[st.MPI_SOURCE] = text;
          ++departures_;
        } else if (k == 2) {
          send(st.MPI_SOURCE, answer_tag, doing());
        }
        post(k);
      }
    }
  }

  /// The world rank whose failure notice arrived first (-1: none), and its message.
  [[nodiscard]] int failed_from() const noexcept { return failed_from_; }
  [[nodiscard]] const std::string& failure() const noexcept { return failure_; }
  /// World ranks that have reached the end of their program, with what their notice said.
  [[nodiscard]] const std::map<int, std::string>& departed() const noexcept { return departed_; }
  /// Grows with every departure notice: a cheap test for "anything new".
  [[nodiscard]] std::size_t departures() const noexcept { return departures_; }

  /// Tells every other rank that this one failed, with `message`; returns without waiting for the
  /// messages to leave (see drain()).
  void post_failure(const std::string& message) noexcept {
    for (int r = 0; r < size_; ++r)
      if (r != rank_) send(r, failure_tag, message);
  }
  /// Waits until every message this channel sent has left, or `until`: short messages leave at
  /// once, and a rank that is stuck or gone must not hold this one.
  void drain(std::chrono::steady_clock::time_point until) noexcept {
    while (!sends_.empty() && std::chrono::steady_clock::now() < until) {
      reap();
      if (!sends_.empty()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  /// Tells every other rank that this one has reached the end of its program.
  void announce_departure(const std::string& message) noexcept { to_all(departure_tag, message); }

  /// Asks the world ranks `ranks` what they are doing and collects, for up to `limit` seconds,
  /// the answers of those inside a tessera wait (world rank -> answer). Answers this rank's own
  /// probes meanwhile.
  template <class Doing>
  std::map<int, std::string> census(const std::vector<int>& ranks, double limit, Doing&& doing) {
    std::map<int, std::string> answers;
    for (int r : ranks)
      if (r != rank_) send(r, probe_tag, "?");
    PostedNotice answer;
    MPI_Irecv(answer.text, notice_length, MPI_CHAR, MPI_ANY_SOURCE, answer_tag, comm_, &answer.request);
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit);
    std::size_t expected = 0;
    for (int r : ranks) expected += r != rank_;
    while (answers.size() < expected && std::chrono::steady_clock::now() < until) {
      poll(doing);
      int flag = 0;
      MPI_Status st;
      MPI_Test(&answer.request, &flag, &st);
      if (!flag) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      answer.text[notice_length - 1] = '\0';
      answers[st.MPI_SOURCE] = answer.text;
      MPI_Irecv(answer.text, notice_length, MPI_CHAR, MPI_ANY_SOURCE, answer_tag, comm_, &answer.request);
    }
    MPI_Cancel(&answer.request);
    MPI_Wait(&answer.request, MPI_STATUS_IGNORE);
    return answers;
  }

 private:
  struct Send {
    MPI_Request request = MPI_REQUEST_NULL;
    std::unique_ptr<std::string> text;
  };

  void post(int k) {
    static constexpr int tags[3] = {failure_tag, departure_tag, probe_tag};
    MPI_Irecv(posted_[k].text, notice_length, MPI_CHAR, MPI_ANY_SOURCE, tags[k], comm_, &posted_[k].request);
  }
  void send(int to, int tag, const std::string& message) noexcept {
    Send s{MPI_REQUEST_NULL, std::make_unique<std::string>(message.substr(0, notice_length - 1))};
    if (MPI_Isend(s.text->c_str(), static_cast<int>(s.text->size() + 1), MPI_CHAR, to, tag, comm_, &s.request) ==
        MPI_SUCCESS)
      sends_.push_back(std::move(s));
  }
  /// Sends `message` to every other rank and waits at most a second for them to leave.
  void to_all(int tag, const std::string& message) noexcept {
    for (int r = 0; r < size_; ++r)
      if (r != rank_) send(r, tag, message);
    drain(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  }
  void reap() noexcept {
    while (!sends_.empty()) {
      int done = 0;
      MPI_Test(&sends_.front().request, &done, MPI_STATUS_IGNORE);
      if (!done) return;
      sends_.pop_front();
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  PostedNotice posted_[3];
  std::deque<Send> sends_;
  int failed_from_ = -1;
  std::string failure_;
  std::map<int, std::string> departed_;
  std::size_t departures_ = 0;
  bool freed_ = false;
};

/// The job channel of this process: set by mpi::Environment for its lifetime, null otherwise
/// (MPI initialised by someone else: waits then see only their own communicator's notices).
inline JobChannel*& job_channel() {
  static JobChannel* channel = nullptr;
  return channel;
}

}  // namespace tessera::mpi::detail
