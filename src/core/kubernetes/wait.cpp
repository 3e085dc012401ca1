#include "core/kubernetes/wait.hpp"

#include <fmt/core.h>

#include <thread>

#include "common/logging.hpp"

namespace licensing::core::kubernetes {
namespace {

// A wait re-lists at most this often, so a server that drops every watch at once does
// not turn the wait into a busy loop.
constexpr std::chrono::milliseconds kRelistPause{200};

std::string resource_version(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("metadata")) return {};
  return object["metadata"].value("resourceVersion", "");
}

}  // namespace

bool has_true_condition(const nlohmann::json& object, std::string_view type) {
  if (!object.is_object() || !object.contains("status") || !object["status"].is_object()) return false;
  const auto& conditions = object["status"].value("conditions", nlohmann::json::array());
  if (!conditions.is_array()) return false;
  for (const auto& condition : conditions) {
    if (condition.is_object() && condition.value("type", "") == type && condition.value("status", "") == "True") {
      return true;
    }
  }
  return false;
}

Result<nlohmann::json, ApiError> wait_for_object(Client& client, const std::string& collection_path,
                                                 const std::string& name,
                                                 std::chrono::steady_clock::time_point deadline,
                                                 const WaitCondition& done) {
  const std::string object_path = collection_path + "/" + name;
  for (int relist = 0;; ++relist) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(ApiError::timed_out, fmt::format("{} did not reach the expected state in time", object_path));
    }
    if (relist > 0) std::this_thread::sleep_for(kRelistPause);

    // List: the object's current state and the resourceVersion to watch from.
    auto current = client.request("GET", object_path);
    if (!current) return std::unexpected(current.error());
    nlohmann::json object = nullptr;
    if (current->status == 200) {
      object = current->body;
    } else if (current->status != 404) {
      return fail(ApiError::status, fmt::format("GET {} returned status {}", object_path, current->status));
    }
    if (done(object)) return object;
    const std::string version = resource_version(object);
    if (version.empty()) continue;  // not created yet: list again

    // Watch: apply events until the condition holds, the stream ends, or 410 Gone.
    const auto remaining = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
    const std::string watch_path =
        fmt::format("{}?watch=true&allowWatchBookmarks=true&fieldSelector={}&resourceVersion={}&timeoutSeconds={}",
                    collection_path, url_encode("metadata.name=" + name), url_encode(version),
                    std::max<long>(1, remaining.count() + 1));
    bool finished = false;
    bool gone = false;
    auto watched = client.watch(watch_path, deadline, [&](const WatchEvent& event) {
      if (event.type == "ERROR") {
        gone = event.object.value("code", 0) == 410;
        return WatchStep::stop;
      }
      if (event.type == "BOOKMARK") return WatchStep::keep_watching;
      object = event.type == "DELETED" ? nlohmann::json(nullptr) : event.object;
      finished = done(object);
      return finished ? WatchStep::stop : WatchStep::keep_watching;
    });
    if (finished) return object;
    if (!watched && watched.error().code == ApiError::timed_out) {
      return fail(ApiError::timed_out, fmt::format("{} did not reach the expected state in time", object_path));
    }
    if (!watched && watched.error().code == ApiError::status) {
      // The detail starts with the status code. 410, 429 and 5xx are worth a new list;
      // any other status (403, say) would repeat, so it is returned.
      const std::string& detail = watched.error().detail;
      gone = detail.starts_with("410");
      if (!gone && !detail.starts_with("429") && !detail.starts_with("5")) return std::unexpected(watched.error());
    } else if (!watched && watched.error().code != ApiError::io && watched.error().code != ApiError::connect) {
      return std::unexpected(watched.error());
    }
    std::string reason = "stream closed";
    if (gone) {
      reason = "410 Gone";
    } else if (!watched) {
      reason = watched.error().detail;
    }
    logging::info("kubernetes_watch_restarted", {{"path", object_path}, {"reason", reason}});
  }
}

}  // namespace licensing::core::kubernetes
