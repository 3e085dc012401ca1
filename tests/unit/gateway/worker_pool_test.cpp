#include "gateway/worker_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>

namespace licensing::gateway {
namespace {

using namespace std::chrono_literals;

// Occupies the pool's only thread until open() is called.
class Gate {
 public:
  std::function<void()> task() {
    return [this] {
      started_.set_value();
      opened_.wait_for(10s);
    };
  }
  bool wait_started() { return started_future_.wait_for(10s) == std::future_status::ready; }
  void open() { open_.set_value(); }

 private:
  std::promise<void> started_;
  std::future<void> started_future_ = started_.get_future();
  std::promise<void> open_;
  std::shared_future<void> opened_ = open_.get_future().share();
};

TEST(WorkerPool, RunsEveryTask) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(2, 100);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.try_submit([&ran] { ++ran; }));
  }
  EXPECT_EQ(ran.load(), 50);
}

TEST(WorkerPool, FullQueueRejectsSubmit) {
  std::atomic<int> ran{0};
  Gate gate;
  {
    WorkerPool pool(1, 2);
    EXPECT_EQ(pool.capacity(), 2U);
    ASSERT_TRUE(pool.try_submit(gate.task()));
    ASSERT_TRUE(gate.wait_started());
    EXPECT_EQ(pool.queued(), 0U);

    EXPECT_TRUE(pool.try_submit([&ran] { ++ran; }));
    EXPECT_TRUE(pool.try_submit([&ran] { ++ran; }));
    EXPECT_EQ(pool.queued(), 2U);
    EXPECT_FALSE(pool.try_submit([&ran] { ++ran; }));
    EXPECT_EQ(pool.queued(), 2U);

    gate.open();
  }
  EXPECT_EQ(ran.load(), 2);
}

TEST(WorkerPool, ThrowingTaskKeepsThreadAlive) {
  WorkerPool pool(1, 10);
  ASSERT_TRUE(pool.try_submit([] { throw std::runtime_error("task failed on purpose"); }));
  ASSERT_TRUE(pool.try_submit([] { throw 42; }));

  std::promise<void> done;
  auto done_future = done.get_future();
  ASSERT_TRUE(pool.try_submit([&done] { done.set_value(); }));

  ASSERT_EQ(done_future.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(pool.failed_tasks(), 2U);
}

TEST(WorkerPool, DestructorDrainsQueue) {
  std::atomic<int> ran{0};
  Gate gate;
  {
    WorkerPool pool(1, 10);
    ASSERT_TRUE(pool.try_submit(gate.task()));
    ASSERT_TRUE(gate.wait_started());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.try_submit([&ran] { ++ran; }));
    gate.open();
  }
  EXPECT_EQ(ran.load(), 5);
}

TEST(WorkerPool, StartsRequestedThreads) {
  WorkerPool pool(3, 1);
  EXPECT_EQ(pool.thread_count(), 3U);
}

TEST(WorkerPool, ZeroSizesThrow) {
  EXPECT_THROW(WorkerPool(0, 10), std::invalid_argument);
  EXPECT_THROW(WorkerPool(1, 0), std::invalid_argument);
}

}  // namespace
}  // namespace licensing::gateway
