#include "gateway/rate_limiter.hpp"

#include <algorithm>
#include <stdexcept>

namespace licensing::gateway {
namespace {

using std::chrono::seconds;

constexpr seconds kMinRetryAfter{1};

seconds round_up_to_retry(std::chrono::steady_clock::duration wait) {
  return std::max(kMinRetryAfter, std::chrono::ceil<seconds>(wait));
}

}  // namespace

RateLimiter::RateLimiter(RateLimiterConfig config) : config_(config) {
  if (config_.max_failures == 0) throw std::invalid_argument("rate limiter max_failures must be at least 1");
  if (config_.window <= seconds::zero()) throw std::invalid_argument("rate limiter window must be positive");
  if (config_.max_keys == 0) throw std::invalid_argument("rate limiter max_keys must be at least 1");
}

RateLimiter::Decision RateLimiter::acquire(std::string_view key, TimePoint now) {
  const std::lock_guard lock(mutex_);

  auto found = entries_.find(key);
  if (found == entries_.end()) {
    if (entries_.size() >= config_.max_keys && now >= next_sweep_) next_sweep_ = now + evict_expired(now);
    if (entries_.size() >= config_.max_keys) return Decision{false, round_up_to_retry(next_sweep_ - now)};
    found = entries_.emplace(std::string(key), Entry{}).first;
  }

  Entry& entry = found->second;
  drop_expired_failures(entry, now);
  if (entry.failures.size() + entry.in_flight >= config_.max_failures) {
    return Decision{false, retry_after(entry, now)};
  }

  ++entry.in_flight;
  return Decision{true, seconds::zero()};
}

void RateLimiter::cancel(std::string_view key) {
  const std::lock_guard lock(mutex_);

  const auto found = entries_.find(key);
  if (found == entries_.end()) return;
  Entry& entry = found->second;
  if (entry.in_flight > 0) --entry.in_flight;
  if (entry.in_flight == 0 && entry.failures.empty()) entries_.erase(found);
}

void RateLimiter::release(std::string_view key, bool success, TimePoint now) {
  const std::lock_guard lock(mutex_);

  auto found = entries_.find(key);
  if (success) {
    if (found == entries_.end()) return;
    Entry& entry = found->second;
    if (entry.in_flight > 0) --entry.in_flight;
    entry.failures.clear();
    if (entry.in_flight == 0) entries_.erase(found);
    return;
  }

  if (found == entries_.end()) {
    // Only a release without an acquire gets here, because an entry with a reservation is
    // never evicted.
    if (entries_.size() >= config_.max_keys && now >= next_sweep_) next_sweep_ = now + evict_expired(now);
    // NOTE: with the table still full, this failure goes unrecorded.
    if (entries_.size() >= config_.max_keys) return;
    found = entries_.emplace(std::string(key), Entry{}).first;
  }

  Entry& entry = found->second;
  if (entry.in_flight > 0) --entry.in_flight;
  drop_expired_failures(entry, now);
  entry.failures.push_back(now);
  // Only the newest max_failures failures can decide a denial, so older ones are dropped.
  while (entry.failures.size() > config_.max_failures) entry.failures.pop_front();
}

std::size_t RateLimiter::tracked_keys() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

void RateLimiter::drop_expired_failures(Entry& entry, TimePoint now) const {
  while (!entry.failures.empty() && entry.failures.front() + config_.window <= now) entry.failures.pop_front();
}

bool RateLimiter::is_evictable(Entry& entry, TimePoint now) const {
  drop_expired_failures(entry, now);
  return entry.in_flight == 0 && entry.failures.empty();
}

seconds RateLimiter::retry_after(const Entry& entry, TimePoint now) const {
  // The attempt is allowed again once `must_expire` of the oldest failures have left the window.
  const std::size_t must_expire = entry.failures.size() + entry.in_flight - config_.max_failures + 1;
  if (must_expire > entry.failures.size()) return kMinRetryAfter;
  return round_up_to_retry(entry.failures[must_expire - 1] + config_.window - now);
}

seconds RateLimiter::evict_expired(TimePoint now) {
  // An entry with a reservation may be released at any moment, so it counts as evictable
  // one second from now.
  auto next_eviction = now + config_.window;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& entry = it->second;
    if (is_evictable(entry, now)) {
      it = entries_.erase(it);
      continue;
    }
    const auto evictable_at = entry.in_flight > 0 ? now + kMinRetryAfter : entry.failures.back() + config_.window;
    next_eviction = std::min(next_eviction, evictable_at);
    ++it;
  }
  return round_up_to_retry(next_eviction - now);
}

}  // namespace licensing::gateway
