#include "gateway/metrics.hpp"

#include <fmt/format.h>

namespace licensing::gateway {
namespace {

// Label values are escaped as the text format requires: backslash, quote, newline.
std::string escape_label_value(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

void Metrics::describe(const std::string& name, const std::string& help) {
  std::lock_guard lock(mutex_);
  help_[name] = help;
  type_.try_emplace(name, "counter");
  values_.try_emplace(name);
}

std::string Metrics::label_text(const Labels& labels) {
  if (labels.empty()) return {};
  std::string text = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) text += ",";
    text += labels[i].first + "=\"" + escape_label_value(labels[i].second) + "\"";
  }
  return text + "}";
}

void Metrics::increment(const std::string& name, const Labels& labels, double amount) {
  std::lock_guard lock(mutex_);
  type_.try_emplace(name, "counter");
  values_[name][label_text(labels)] += amount;
}

void Metrics::observe(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mutex_);
  type_[name] = "summary";
  const auto text = label_text(labels);
  values_[name + "_sum"][text] += value;
  values_[name + "_count"][text] += 1;
}

std::string Metrics::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, type] : type_) {
    if (const auto help = help_.find(name); help != help_.end()) out += fmt::format("# HELP {} {}\n", name, help->second);
    out += fmt::format("# TYPE {} {}\n", name, type);
    const std::vector<std::string> series = type == "summary" ? std::vector<std::string>{name + "_sum", name + "_count"}
                                                              : std::vector<std::string>{name};
    for (const auto& family : series) {
      const auto found = values_.find(family);
      if (found == values_.end()) continue;
      for (const auto& [labels, value] : found->second) out += fmt::format("{}{} {}\n", family, labels, value);
    }
  }
  return out;
}

}  // namespace licensing::gateway
