#pragma once

// Operator logs: one line per event on stderr, "time level event key=value ...".
// Levels by frequency: trace per read, debug per session, info lifecycle, warn degraded
// but serving, error an operation that could not be done.

#include <spdlog/spdlog.h>

#include "fulcrum/types.hpp"

namespace fulcrum {

void initLogging(LogLevel level);

// Changes the level at run time (config reload). Thread-safe.
void setLogLevel(LogLevel level);

}  // namespace fulcrum
