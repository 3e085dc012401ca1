// Limits failed login attempts per key: the gateway keeps one RateLimiter keyed by the
// normalized username key and one keyed by client IP address.
//
// An attempt first reserves a slot with acquire() and ends it with release() once the
// password check is done. acquire() allows the attempt only while
//   failures inside the sliding window + reservations still in flight < max_failures,
// so parallel guesses cannot overshoot the limit: with max_failures 5 and 50 wrong guesses
// at once, exactly 5 reach the password check. A failed attempt records a failure. A
// successful one clears that key's failures and touches no other key.
//
// Memory is bounded: at most max_keys keys are tracked. When the table is full, entries
// with no reservation and no failure inside the window are evicted. If none can be
// evicted, a new key is denied with a retry-after instead of growing the table.
//
// Thread-safe: one mutex guards the table. Time is passed in by the caller, and `now`
// must never decrease between calls (a steady clock does that).
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace licensing::gateway {

struct RateLimiterConfig {
  std::size_t max_failures = 5;                  // failures plus reservations allowed per key and window
  std::chrono::seconds window{std::chrono::minutes(15)};  // how long a failure counts
  std::size_t max_keys = 100'000;                // keys tracked at once
};

class RateLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Decision {
    bool allowed = false;
    // Zero when allowed; otherwise at least one second, rounded up. When the limit comes from
    // reservations in flight rather than recorded failures it is one second, because those
    // end within one password check.
    std::chrono::seconds retry_after{0};
  };

  // Throws std::invalid_argument when max_failures, window or max_keys is zero.
  explicit RateLimiter(RateLimiterConfig config);

  // Reserves an attempt for `key`. Every allowed decision must be followed by exactly one
  // release() for the same key, and a denied decision must not be released.
  Decision acquire(std::string_view key, TimePoint now);

  // Ends a reservation. `success` clears the key's failures, and otherwise one failure is
  // recorded at `now`. A release without a matching acquire still records the outcome.
  void release(std::string_view key, bool success, TimePoint now);

  // Ends a reservation without recording an outcome: for an attempt abandoned before the
  // password was checked (the other limiter denied it, or the server was overloaded).
  void cancel(std::string_view key);

  // Keys in the table, including expired ones not yet evicted. For metrics and tests.
  std::size_t tracked_keys() const;

 private:
  struct Entry {
    std::deque<TimePoint> failures;  // oldest first, at most max_failures of the newest
    std::size_t in_flight = 0;
  };

  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };

  void drop_expired_failures(Entry& entry, TimePoint now) const;
  bool is_evictable(Entry& entry, TimePoint now) const;
  std::chrono::seconds retry_after(const Entry& entry, TimePoint now) const;
  // Evicts what it can; returns how long until the next entry could become evictable.
  std::chrono::seconds evict_expired(TimePoint now);

  const RateLimiterConfig config_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>> entries_;
  // Until this time a sweep of a full table cannot evict anything, so it is skipped.
  TimePoint next_sweep_{};
};

}  // namespace licensing::gateway
