// Structured logs: one JSON object per line on stderr, with fixed fields
// {"ts", "level", "component", "event", ...}. Callers pass identifiers and outcomes,
// never a password, token, key or certificate private key.
#pragma once

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <string_view>

namespace licensing::logging {

// Sets up the process-wide logger for `component` ("gateway", "core", ...).
// `level` is one of trace, debug, info, warn, error.
void init(std::string_view component, std::string_view level);

void write(spdlog::level::level_enum level, std::string_view event, const nlohmann::json& fields = nlohmann::json::object());

inline void debug(std::string_view event, const nlohmann::json& fields = nlohmann::json::object()) { write(spdlog::level::debug, event, fields); }
inline void info(std::string_view event, const nlohmann::json& fields = nlohmann::json::object()) { write(spdlog::level::info, event, fields); }
inline void warn(std::string_view event, const nlohmann::json& fields = nlohmann::json::object()) { write(spdlog::level::warn, event, fields); }
inline void error(std::string_view event, const nlohmann::json& fields = nlohmann::json::object()) { write(spdlog::level::err, event, fields); }

}  // namespace licensing::logging
