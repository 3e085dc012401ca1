#include "common/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <fmt/chrono.h>

#include <chrono>
#include <string>

namespace licensing::logging {
namespace {

std::string& component_name() {
  static std::string name = "licensing";
  return name;
}

}  // namespace

void init(std::string_view component, std::string_view level) {
  component_name() = std::string(component);
  auto logger = spdlog::stderr_logger_mt(std::string(component));
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void write(spdlog::level::level_enum level, std::string_view event, const nlohmann::json& fields) {
  if (!spdlog::should_log(level)) return;

  const auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  nlohmann::json line = {
      {"ts", fmt::format("{:%FT%T}Z", now)},
      {"level", spdlog::level::to_string_view(level).data()},
      {"component", component_name()},
      {"event", event},
  };
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) line[key] = value;
  }
  spdlog::log(level, "{}", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace licensing::logging
