// A fixed set of threads that runs tasks from a bounded queue, so CPU-heavy work such as
// password hashing cannot pile up without limit. When the queue is full, try_submit()
// returns false and the caller responds with 503 and Retry-After.
//
// A task that throws is counted in failed_tasks() and logged, and the thread keeps running.
// The destructor stops accepting tasks, lets the threads run every task already queued,
// and joins them.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace licensing::gateway {

class WorkerPool {
 public:
  // Starts `threads` threads with room for `queue_capacity` waiting tasks. Throws
  // std::invalid_argument when either is zero.
  WorkerPool(std::size_t threads, std::size_t queue_capacity);
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task` and returns true, or returns false without queuing when the queue contains
  // capacity() tasks or the pool is shutting down. Thread-safe.
  bool try_submit(std::function<void()> task);

  // Tasks waiting for a thread; running tasks are not counted.
  std::size_t queued() const;
  std::size_t capacity() const { return capacity_; }
  std::size_t thread_count() const { return threads_.size(); }
  // Tasks that ended with an exception since the pool started.
  std::size_t failed_tasks() const;

 private:
  void run();

  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable task_ready_;
  std::deque<std::function<void()>> queue_;
  std::size_t failed_tasks_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace licensing::gateway
