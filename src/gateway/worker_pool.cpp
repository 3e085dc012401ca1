#include "gateway/worker_pool.hpp"

#include <exception>
#include <stdexcept>
#include <utility>

#include "common/logging.hpp"

namespace licensing::gateway {

WorkerPool::WorkerPool(std::size_t threads, std::size_t queue_capacity) : capacity_(queue_capacity) {
  if (threads == 0) throw std::invalid_argument("worker pool needs at least one thread");
  if (queue_capacity == 0) throw std::invalid_argument("worker pool queue capacity must be at least 1");

  threads_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
  } catch (...) {
    // The destructor does not run for a constructor that throws, so join what started.
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    task_ready_.notify_all();
    for (auto& thread : threads_) thread.join();
    throw;
  }
}

WorkerPool::~WorkerPool() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  task_ready_.notify_all();
  for (auto& thread : threads_) thread.join();
}

bool WorkerPool::try_submit(std::function<void()> task) {
  {
    const std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= capacity_) return false;
    queue_.push_back(std::move(task));
  }
  task_ready_.notify_one();
  return true;
}

std::size_t WorkerPool::queued() const {
  const std::lock_guard lock(mutex_);
  return queue_.size();
}

std::size_t WorkerPool::failed_tasks() const {
  const std::lock_guard lock(mutex_);
  return failed_tasks_;
}

void WorkerPool::run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      task_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      // Shutdown still drains the queue, so a task queued before it is never lost.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }

    try {
      task();
    } catch (const std::exception& error) {
      {
        const std::lock_guard lock(mutex_);
        ++failed_tasks_;
      }
      logging::error("worker_task_failed", {{"error", error.what()}});
    } catch (...) {
      {
        const std::lock_guard lock(mutex_);
        ++failed_tasks_;
      }
      logging::error("worker_task_failed", {{"error", "non-standard exception"}});
    }
  }
}

}  // namespace licensing::gateway
