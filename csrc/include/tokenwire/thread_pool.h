// A small persistent pool for spreading a batch's rows over threads. Work items are
// independent rows, so results never depend on the thread count.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tokenwire {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // >= 1; the caller's thread is one of them
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i, worker) for i in [0, n), worker in [0, size()); returns when all are done and
  // rethrows the first exception. Not reentrant: one parallel_for at a time per pool.
  void parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn);

 private:
  void run(int worker);
  void drain(int worker);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  uint64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace tokenwire
