#include "gateway/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace licensing::gateway {
namespace {

using std::chrono::seconds;
using TimePoint = RateLimiter::TimePoint;

const TimePoint kStart = TimePoint{} + std::chrono::hours(1000);

RateLimiterConfig config(std::size_t max_failures, seconds window, std::size_t max_keys = 1000) {
  return RateLimiterConfig{.max_failures = max_failures, .window = window, .max_keys = max_keys};
}

// One complete failed attempt; returns whether it was allowed.
bool fail_once(RateLimiter& limiter, std::string_view key, TimePoint now) {
  const auto decision = limiter.acquire(key, now);
  if (decision.allowed) limiter.release(key, false, now);
  return decision.allowed;
}

TEST(RateLimiter, AllowsUpToMaxFailures) {
  RateLimiter limiter(config(3, seconds(60)));
  EXPECT_TRUE(fail_once(limiter, "alice", kStart));
  EXPECT_TRUE(fail_once(limiter, "alice", kStart));
  EXPECT_TRUE(fail_once(limiter, "alice", kStart));

  const auto denied = limiter.acquire("alice", kStart);
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after, seconds(60));
}

TEST(RateLimiter, AllowedDecisionHasZeroRetryAfter) {
  RateLimiter limiter(config(3, seconds(60)));
  const auto decision = limiter.acquire("alice", kStart);
  EXPECT_TRUE(decision.allowed);
  EXPECT_EQ(decision.retry_after, seconds(0));
}

TEST(RateLimiter, ParallelHeldReservationsHitExactLimit) {
  constexpr int kThreads = 50;
  RateLimiter limiter(config(5, seconds(300)));
  std::atomic<int> allowed{0};
  std::latch all_acquired(kThreads);

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      const auto decision = limiter.acquire("alice", kStart);
      all_acquired.arrive_and_wait();
      if (decision.allowed) {
        ++allowed;
        limiter.release("alice", false, kStart);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(allowed.load(), 5);
  EXPECT_FALSE(limiter.acquire("alice", kStart).allowed);
}

TEST(RateLimiter, ParallelWrongGuessesHitExactLimit) {
  constexpr int kThreads = 50;
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    RateLimiter limiter(config(5, seconds(300)));
    std::atomic<int> allowed{0};
    std::latch start(kThreads);

    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        if (fail_once(limiter, "alice", kStart)) ++allowed;
      });
    }
    for (auto& thread : threads) thread.join();

    ASSERT_EQ(allowed.load(), 5) << "round " << round;
  }
}

TEST(RateLimiter, RetryAfterCountsToOldestFailureExpiry) {
  RateLimiter limiter(config(2, seconds(60)));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart + seconds(10)));

  const auto denied = limiter.acquire("alice", kStart + seconds(20));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after, seconds(40));

  // Rounded up to whole seconds.
  const auto later = limiter.acquire("alice", kStart + seconds(20) + std::chrono::milliseconds(300));
  EXPECT_FALSE(later.allowed);
  EXPECT_EQ(later.retry_after, seconds(40));
}

TEST(RateLimiter, InFlightDenialRetriesAfterOneSecond) {
  RateLimiter limiter(config(2, seconds(60)));
  ASSERT_TRUE(limiter.acquire("alice", kStart).allowed);
  ASSERT_TRUE(limiter.acquire("alice", kStart).allowed);

  const auto denied = limiter.acquire("alice", kStart);
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after, seconds(1));
}

TEST(RateLimiter, WindowExpiryAllowsAgain) {
  RateLimiter limiter(config(2, seconds(60)));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));

  EXPECT_FALSE(limiter.acquire("alice", kStart + seconds(59)).allowed);
  EXPECT_TRUE(limiter.acquire("alice", kStart + seconds(60)).allowed);
}

TEST(RateLimiter, SlidingWindowFreesOneSlotAtATime) {
  RateLimiter limiter(config(2, seconds(60)));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart + seconds(30)));

  EXPECT_TRUE(fail_once(limiter, "alice", kStart + seconds(60)));
  const auto denied = limiter.acquire("alice", kStart + seconds(61));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after, seconds(29));
}

TEST(RateLimiter, SuccessClearsOwnFailures) {
  RateLimiter limiter(config(3, seconds(60)));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  ASSERT_TRUE(limiter.acquire("alice", kStart).allowed);
  limiter.release("alice", true, kStart);

  EXPECT_TRUE(fail_once(limiter, "alice", kStart));
  EXPECT_TRUE(fail_once(limiter, "alice", kStart));
  EXPECT_TRUE(fail_once(limiter, "alice", kStart));
  EXPECT_FALSE(limiter.acquire("alice", kStart).allowed);
}

TEST(RateLimiter, OtherKeySuccessDoesNotReset) {
  RateLimiter limiter(config(2, seconds(60)));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));

  ASSERT_TRUE(limiter.acquire("bob", kStart).allowed);
  limiter.release("bob", true, kStart);

  EXPECT_FALSE(limiter.acquire("alice", kStart).allowed);
}

TEST(RateLimiter, KeysAreIndependent) {
  RateLimiter limiter(config(1, seconds(60)));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  EXPECT_FALSE(limiter.acquire("alice", kStart).allowed);
  EXPECT_TRUE(limiter.acquire("bob", kStart).allowed);
}

TEST(RateLimiter, FullTableDeniesNewKey) {
  RateLimiter limiter(config(5, seconds(60), 3));
  ASSERT_TRUE(fail_once(limiter, "a", kStart));
  ASSERT_TRUE(fail_once(limiter, "b", kStart + seconds(10)));
  ASSERT_TRUE(fail_once(limiter, "c", kStart + seconds(20)));

  const auto denied = limiter.acquire("d", kStart + seconds(30));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after, seconds(30));  // "a" expires at kStart + 60 s
  EXPECT_EQ(limiter.tracked_keys(), 3U);

  // Known keys keep working while the table is full.
  EXPECT_TRUE(fail_once(limiter, "b", kStart + seconds(30)));
}

TEST(RateLimiter, FullTableEvictsExpiredEntries) {
  RateLimiter limiter(config(5, seconds(60), 3));
  ASSERT_TRUE(fail_once(limiter, "a", kStart));
  ASSERT_TRUE(fail_once(limiter, "b", kStart));
  ASSERT_TRUE(fail_once(limiter, "c", kStart + seconds(30)));
  ASSERT_FALSE(limiter.acquire("d", kStart + seconds(30)).allowed);

  EXPECT_TRUE(limiter.acquire("d", kStart + seconds(60)).allowed);
  EXPECT_EQ(limiter.tracked_keys(), 2U);  // "a" and "b" evicted, "c" and "d" remain
}

TEST(RateLimiter, MemoryStaysBoundedUnderManyKeys) {
  constexpr std::size_t kMaxKeys = 100;
  RateLimiter limiter(config(5, seconds(60), kMaxKeys));
  int denied = 0;
  for (int i = 0; i < 10'000; ++i) {
    if (!fail_once(limiter, "key-" + std::to_string(i), kStart + std::chrono::milliseconds(i))) ++denied;
    ASSERT_LE(limiter.tracked_keys(), kMaxKeys);
  }
  EXPECT_EQ(denied, 10'000 - static_cast<int>(kMaxKeys));
}

TEST(RateLimiter, ReservedKeysAreNotEvicted) {
  RateLimiter limiter(config(5, seconds(60), 2));
  ASSERT_TRUE(limiter.acquire("a", kStart).allowed);
  ASSERT_TRUE(limiter.acquire("b", kStart).allowed);

  const auto denied = limiter.acquire("c", kStart + seconds(3600));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after, seconds(1));

  // A successful login frees its slot at once.
  limiter.release("a", true, kStart + seconds(3600));
  EXPECT_EQ(limiter.tracked_keys(), 1U);
  EXPECT_TRUE(limiter.acquire("c", kStart + seconds(3600)).allowed);
}

TEST(RateLimiter, CancelFreesReservationWithoutFailure) {
  RateLimiter limiter(config(1, seconds(60)));
  ASSERT_TRUE(limiter.acquire("alice", kStart).allowed);
  EXPECT_FALSE(limiter.acquire("alice", kStart).allowed);

  limiter.cancel("alice");
  EXPECT_TRUE(limiter.acquire("alice", kStart).allowed);
}

TEST(RateLimiter, CancelKeepsRecordedFailures) {
  RateLimiter limiter(config(2, seconds(60)));
  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  ASSERT_TRUE(limiter.acquire("alice", kStart).allowed);
  limiter.cancel("alice");

  ASSERT_TRUE(fail_once(limiter, "alice", kStart));
  EXPECT_FALSE(limiter.acquire("alice", kStart).allowed);
}

TEST(RateLimiter, ZeroConfigThrows) {
  EXPECT_THROW(RateLimiter(config(0, seconds(60))), std::invalid_argument);
  EXPECT_THROW(RateLimiter(config(5, seconds(0))), std::invalid_argument);
  EXPECT_THROW(RateLimiter(config(5, seconds(60), 0)), std::invalid_argument);
}

}  // namespace
}  // namespace licensing::gateway
