// Prometheus counters for the gateway, rendered in the text exposition format 0.0.4.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace licensing::gateway {

class Metrics {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // Declares a counter family so it is listed (with HELP and TYPE) even before its
  // first increment.
  void describe(const std::string& name, const std::string& help);
  void increment(const std::string& name, const Labels& labels = {}, double amount = 1);
  // Adds an observation to a summary-like pair NAME_sum and NAME_count.
  void observe(const std::string& name, const Labels& labels, double value);

  std::string render() const;

 private:
  static std::string label_text(const Labels& labels);

  mutable std::mutex mutex_;
  std::map<std::string, std::string> help_;
  std::map<std::string, std::string> type_;
  std::map<std::string, std::map<std::string, double>> values_;  // family -> label text -> value
};

}  // namespace licensing::gateway
