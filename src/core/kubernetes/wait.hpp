// Waiting on one object of the Kubernetes API: a GET, then a watch from the object's
// resourceVersion. The wait repeats the GET and the watch whenever the stream drops or
// the API server returns 410 Gone, which means the resourceVersion is too old.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/kubernetes/client.hpp"

namespace licensing::core::kubernetes {

// Called with the object's current state, or null once it is gone; returns true when the
// wait is over.
using WaitCondition = std::function<bool(const nlohmann::json& object)>;

// Waits until `done` accepts the object `name` of `collection_path` (for example
// /api/v1/namespaces/N/pods) or `deadline` passes (ApiError::timed_out). Returns the
// object's last state, or null when it is gone.
Result<nlohmann::json, ApiError> wait_for_object(Client& client, const std::string& collection_path,
                                                 const std::string& name,
                                                 std::chrono::steady_clock::time_point deadline,
                                                 const WaitCondition& done);

// True when a Pod, CertificateRequest or other object has condition `type` with status
// "True".
bool has_true_condition(const nlohmann::json& object, std::string_view type);

}  // namespace licensing::core::kubernetes
